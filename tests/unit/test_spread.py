"""hardware.spread.plan_spread: RPC workers' devices take what does not fit this machine; pure, no network."""

from __future__ import annotations

import pytest

from mullama.core.errors import NoFit
from mullama.hardware.devices import Devices, Gpu, Host, RemoteDevice
from mullama.hardware.placement import ModelCost
from mullama.hardware.spread import plan_spread

MiB = 1 << 20
GiB = 1 << 30

# 10 layers of 9 MiB + 1 MiB KV (10 MiB units), a 20 MiB output head, a 30 MiB input layer,
# 5 MiB compute buffers: all on the host 10 * 10 + 20 + 30 + 5 = 155 MiB.
COST = ModelCost(n_layer=10, layer_weights=(9 * MiB,) * 10, kv_per_layer=MiB, output_weights=20 * MiB,
                 input_weights=30 * MiB, compute_gpu=5 * MiB, compute_cpu=5 * MiB)
HOST = Host(ram_total=64 * GiB, ram_available=48 * GiB, swap_total=0, swap_free=0)


def worker(n: int, free: int, index: int = 0) -> RemoteDevice:
    return RemoteDevice(endpoint=f"10.0.0.{n}:50052", index=index, free=free, total=free)


def devices(*remote: RemoteDevice, gpus: tuple[Gpu, ...] = (), skipped: tuple[str, ...] = ()) -> Devices:
    return Devices(gpus=gpus, host=HOST, remote=remote, remote_skipped=skipped)


def test_a_model_that_fits_here_never_touches_a_worker():
    p = plan_spread(COST, devices(worker(2, GiB)))
    assert (p.rpc_servers, p.remote_layers, p.n_gpu_layers, p.processor()) == ((), (), 0, "100% CPU")


def test_what_the_host_cannot_keep_is_balanced_over_the_workers_in_llama_cpp_order():
    # the host keeps 35 MiB fixed + 5 layers = 85 MiB; 5 layers + the output head (70 MiB) go out
    p = plan_spread(COST, devices(worker(2, 100 * MiB), worker(3, 100 * MiB)), ram_budget=85 * MiB)
    assert p.cpu_bytes == 85 * MiB and p.cpu_layers == 5
    assert p.rpc_servers == ("10.0.0.2:50052", "10.0.0.3:50052")
    assert p.remote_devices == ("10.0.0.2:50052#0", "10.0.0.3:50052#0")
    assert sum(p.remote_layers) == 6 and min(p.remote_layers) >= 2  # spread, not one worker filled first
    assert p.n_gpu_layers == 6 and p.tensor_split == tuple(float(c) for c in p.remote_layers)
    assert p.remote_bytes[-1] > p.remote_bytes[0]  # the last worker holds the output head
    assert sum(p.remote_bytes) == 50 * MiB + 20 * MiB + 2 * 5 * MiB  # layers, head, a compute buffer each
    assert p.processor() == "52%/48% CPU/RPC" and p.total_bytes() == 85 * MiB + sum(p.remote_bytes)


def test_only_as_much_goes_remote_as_the_host_cannot_keep():
    p = plan_spread(COST, devices(worker(2, GiB)), ram_budget=145 * MiB)  # one unit short: the head goes
    assert p.remote_layers == (1,) and p.cpu_layers == 10 and p.tensor_split == ()


def test_a_worker_with_no_layer_is_not_added_and_a_used_workers_every_device_is():
    two_devices = (worker(2, GiB, 0), worker(2, 1 * MiB, 1))
    p = plan_spread(COST, devices(*two_devices, worker(3, 1 * MiB)), ram_budget=85 * MiB)
    assert p.rpc_servers == ("10.0.0.2:50052",)
    assert p.remote_devices == ("10.0.0.2:50052#0", "10.0.0.2:50052#1") and p.remote_layers == (6, 0)
    assert p.tensor_split == (6.0, 0.0)


def test_local_gpus_take_the_last_layers_and_the_workers_the_ones_before():
    gpu = Gpu(index=0, name="GPU0", uuid="u", total=GiB, free=256 * MiB + 40 * MiB)  # head + 1 layer + compute
    p = plan_spread(COST, devices(worker(2, GiB), gpus=(gpu,)), ram_budget=85 * MiB)
    assert p.layers_per_gpu == (2,) and p.remote_layers == (4,) and p.n_gpu_layers == 6
    assert p.tensor_split == (4.0, 2.0)  # RPC devices first, as llama.cpp lists them
    assert p.processor().endswith("CPU/GPU/RPC")


def test_no_fit_names_every_device_counted_and_every_worker_left_out():
    with pytest.raises(NoFit) as exc:
        plan_spread(COST, devices(worker(2, 30 * MiB), skipped=("10.0.0.3:50052 (unreachable: refused)",)),
                    ram_budget=85 * MiB, model="m")
    text = str(exc.value)
    assert "only" in text and "RPC workers" in text
    assert "host 85.0 MiB (ram_budget)" in text and "RPC 10.0.0.2:50052#0 30.0 MiB" in text
    assert "not counted: 10.0.0.3:50052 (unreachable: refused)" in text


def test_no_worker_answering_still_says_which_were_tried():
    with pytest.raises(NoFit, match=r"not counted: 10\.0\.0\.3:50052"):
        plan_spread(COST, devices(skipped=("10.0.0.3:50052 (unreachable: refused)",)), ram_budget=85 * MiB)


def test_the_host_must_hold_the_input_layer_whatever_the_workers_offer():
    with pytest.raises(NoFit, match="input layer and compute buffer alone"):
        plan_spread(COST, devices(worker(2, GiB)), ram_budget=20 * MiB)


@pytest.mark.parametrize("override", [{"n_gpu_layers": 4}, {"tensor_split": (1.0, 1.0)}, {"require_full": True}])
def test_overrides_and_require_full_keep_their_local_meaning(override):
    with pytest.raises(NoFit, match="counted: "):
        plan_spread(COST, devices(worker(2, GiB)), ram_budget=85 * MiB, **override)


def test_without_workers_the_refusal_is_the_local_one():
    with pytest.raises(NoFit) as exc:
        plan_spread(COST, devices(), ram_budget=85 * MiB)
    assert "counted" not in str(exc.value) and "host memory" in str(exc.value)


def test_describe_lists_the_remote_share():
    p = plan_spread(COST, devices(worker(2, GiB)), ram_budget=85 * MiB)
    d = p.describe()
    assert d["rpc_servers"] == ["10.0.0.2:50052"]
    assert d["remote"] == [{"device": "10.0.0.2:50052#0", "layers": 6, "bytes": 75 * MiB}]
