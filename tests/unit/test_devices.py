"""devices.probe with fake NVML and psutil modules, and the MULLAMA_FAKE_GPUS override."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mullama.hardware import devices
from mullama.hardware.devices import FAKE_GPUS_ENV, Devices, Gpu, Host
from mullama.core.errors import ConfigError

GiB = 1 << 30


class FakeNvml:
    """The few pynvml calls probe() makes, with failures on demand; records init/shutdown."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus=(), *, init_error=False, count_error=False, bad=(), bad_call="handle",
                 as_bytes=False):
        self.gpus = list(gpus)  # (name, uuid, total, free)
        self.init_error, self.count_error = init_error, count_error
        self.bad, self.bad_call = set(bad), bad_call
        self.as_bytes = as_bytes
        self.calls: list[str] = []

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        if self.count_error:
            raise self.NVMLError("Unknown Error")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if i in self.bad and self.bad_call == "handle":
            raise self.NVMLError("GPU is lost")
        return i

    def nvmlDeviceGetMemoryInfo(self, handle):
        if handle in self.bad and self.bad_call == "memory":
            raise self.NVMLError("Not Supported")
        _, _, total, free = self.gpus[handle]
        return SimpleNamespace(total=total, free=free, used=total - free)

    def nvmlDeviceGetName(self, handle):
        name = self.gpus[handle][0]
        return name.encode() if self.as_bytes else name

    def nvmlDeviceGetUUID(self, handle):
        uuid = self.gpus[handle][1]
        return uuid.encode() if self.as_bytes else uuid


class FakePsutil:
    def __init__(self, ram_total=64 * GiB, available=48 * GiB, swap_total=8 * GiB, swap_free=6 * GiB):
        self.vm = SimpleNamespace(total=ram_total, available=available, free=available // 2)
        self.sw = SimpleNamespace(total=swap_total, free=swap_free)

    def virtual_memory(self):
        return self.vm

    def swap_memory(self):
        return self.sw


class RecordingLog:
    def __init__(self):
        self.records: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        return lambda event, **kw: self.records.append((level, event, kw))


@pytest.fixture
def log(monkeypatch) -> RecordingLog:
    rec = RecordingLog()
    monkeypatch.setattr(devices, "log", rec)
    return rec


TWO_GPUS = [("NVIDIA A100", "GPU-aaaa", 80 * GiB, 70 * GiB), ("NVIDIA L4", "GPU-bbbb", 24 * GiB, 20 * GiB)]


# ---------------------------------------------------------------- NVML


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_probe_reads_every_gpu_and_shuts_nvml_down(as_bytes, log):
    nvml = FakeNvml(TWO_GPUS, as_bytes=as_bytes)
    found = devices.probe(nvml=nvml, psutil_mod=FakePsutil(), environ={})
    assert found.gpus == (
        Gpu(index=0, name="NVIDIA A100", uuid="GPU-aaaa", total=80 * GiB, free=70 * GiB),
        Gpu(index=1, name="NVIDIA L4", uuid="GPU-bbbb", total=24 * GiB, free=20 * GiB),
    )
    assert found.host == Host(ram_total=64 * GiB, ram_available=48 * GiB,
                              swap_total=8 * GiB, swap_free=6 * GiB)
    assert nvml.calls == ["init", "shutdown"]
    assert log.records == []


def test_nvml_error_on_init_means_cpu_only_logged_once_at_debug(log):
    nvml = FakeNvml(TWO_GPUS, init_error=True)
    found = devices.probe(nvml=nvml, psutil_mod=FakePsutil(), environ={})
    assert found.gpus == ()
    assert found.host.ram_available == 48 * GiB
    assert nvml.calls == ["init"]  # no shutdown without a successful init
    assert [(level, kw.get("error_type")) for level, _, kw in log.records] == [("debug", "NVMLError")]


def test_nvml_failing_to_count_means_cpu_only_and_still_shuts_down(log):
    nvml = FakeNvml(TWO_GPUS, count_error=True)
    assert devices.probe(nvml=nvml, psutil_mod=FakePsutil(), environ={}).gpus == ()
    assert nvml.calls == ["init", "shutdown"]
    assert [level for level, _, _ in log.records] == ["debug"]


@pytest.mark.parametrize("bad_call", ["handle", "memory"])
def test_a_device_that_fails_is_skipped_and_the_others_kept(bad_call, log):
    nvml = FakeNvml(TWO_GPUS, bad={0}, bad_call=bad_call)
    found = devices.probe(nvml=nvml, psutil_mod=FakePsutil(), environ={})
    assert [(g.index, g.name) for g in found.gpus] == [(1, "NVIDIA L4")]  # NVML's index, not a renumbering
    assert nvml.calls == ["init", "shutdown"]
    assert len(log.records) == 1 and log.records[0][0] == "debug" and log.records[0][2]["index"] == 0


def test_no_pynvml_module_means_cpu_only(monkeypatch, log):
    monkeypatch.setattr(devices, "_import_pynvml", lambda: None)
    found = devices.probe(psutil_mod=FakePsutil(), environ={})
    assert found.gpus == ()
    assert [level for level, _, _ in log.records] == ["debug"]


def test_without_injection_the_real_pynvml_module_is_used(monkeypatch):
    nvml = FakeNvml(TWO_GPUS[:1])
    monkeypatch.setattr(devices, "_import_pynvml", lambda: nvml)
    assert [g.name for g in devices.probe(psutil_mod=FakePsutil(), environ={FAKE_GPUS_ENV: "  "}).gpus] == [
        "NVIDIA A100"]  # a blank variable does not count as set


def test_real_probe_on_this_machine_returns_a_devices_value():
    found = devices.probe()  # real psutil, real (or missing) NVML: must never raise
    assert isinstance(found, Devices)
    assert found.host.ram_total > 0


# ---------------------------------------------------------------- MULLAMA_FAKE_GPUS


def test_fake_gpus_from_the_environment_replace_nvml(monkeypatch):
    monkeypatch.setattr(devices, "_import_pynvml", lambda: pytest.fail("NVML must not be touched"))
    env = {FAKE_GPUS_ENV: json.dumps([
        {"name": "RTX 4090", "total": "24GiB", "free": "22GiB"},
        {"name": "RTX 3060", "total": 12 * GiB, "free": 10 * GiB, "uuid": "GPU-3060"},
    ])}
    found = devices.probe(psutil_mod=FakePsutil(), environ=env)
    assert found.gpus == (
        Gpu(index=0, name="RTX 4090", uuid="GPU-fake-0", total=24 * GiB, free=22 * GiB),
        Gpu(index=1, name="RTX 3060", uuid="GPU-3060", total=12 * GiB, free=10 * GiB),
    )


def test_fake_gpus_read_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, '[{"name": "A", "total": 1000, "free": 500}]')
    assert devices.probe(psutil_mod=FakePsutil()).gpus == (Gpu(0, "A", "GPU-fake-0", 1000, 500),)


def test_an_empty_fake_list_means_no_gpus(monkeypatch):
    monkeypatch.setattr(devices, "_import_pynvml", lambda: pytest.fail("NVML must not be touched"))
    assert devices.probe(psutil_mod=FakePsutil(), environ={FAKE_GPUS_ENV: "[]"}).gpus == ()


def test_injected_nvml_wins_over_the_environment():
    env = {FAKE_GPUS_ENV: '[{"name": "fake", "total": 10, "free": 5}]'}
    found = devices.probe(nvml=FakeNvml(TWO_GPUS), psutil_mod=FakePsutil(), environ=env)
    assert [g.name for g in found.gpus] == ["NVIDIA A100", "NVIDIA L4"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("[{name: 'A'}]", "not valid JSON"),
        ('{"name": "A", "total": 1, "free": 1}', "must be a JSON list"),
        ('["A100"]', "must be an object"),
        ('[{"name": "A", "total": 10}]', "lacks free"),
        ('[{"name": "A", "total": 10, "free": 20}]', "free (20) is larger than total (10)"),
        ('[{"name": "A", "total": "lots", "free": 1}]', "[0].total"),
        ('[{"name": "A", "total": -5, "free": 1}]', "[0].total"),
        ('[{"name": "A", "total": true, "free": 1}]', "[0].total"),
        ('[{"name": "A", "total": 10, "free": 1, "vram": 3}]', "unknown field(s) vram"),
        ('[{"name": 7, "total": 10, "free": 1}]', "must be strings"),
    ],
    ids=["bad-json", "not-list", "not-object", "missing", "free>total", "bad-size", "negative", "bool",
         "unknown", "name-type"],
)
def test_invalid_fake_gpus_raise_a_value_error_naming_the_variable(value, expected):
    with pytest.raises(ValueError) as info:
        devices.probe(psutil_mod=FakePsutil(), environ={FAKE_GPUS_ENV: value})
    assert isinstance(info.value, ConfigError)
    assert FAKE_GPUS_ENV in str(info.value)
    assert expected in str(info.value)


# ---------------------------------------------------------------- values


def test_describe_is_json_able_and_complete():
    found = devices.probe(nvml=FakeNvml(TWO_GPUS), psutil_mod=FakePsutil(), environ={})
    summary = json.loads(json.dumps(found.describe()))
    assert summary["gpus"][1] == {"index": 1, "name": "NVIDIA L4", "uuid": "GPU-bbbb",
                                  "total": 24 * GiB, "free": 20 * GiB}
    assert summary["host"] == {"ram_total": 64 * GiB, "ram_available": 48 * GiB,
                               "swap_total": 8 * GiB, "swap_free": 6 * GiB}
    assert summary["vram_total"] == 104 * GiB and summary["vram_free"] == 90 * GiB
    assert summary["cpu_only"] is False
    assert Devices(gpus=(), host=found.host).describe()["cpu_only"] is True


def test_host_available_is_ram_plus_free_swap_and_gpu_used():
    assert Host(ram_total=8, ram_available=5, swap_total=4, swap_free=3).available == 8
    assert Gpu(index=0, name="g", uuid="u", total=10, free=4).used == 6
