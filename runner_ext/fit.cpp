#include "fit.h"

namespace mullama {

FitReport fit(const std::string & path, const ModelParams & mparams, const ContextParams & cparams) {
    ModelParams dry = mparams;
    dry.no_alloc = true;
    dry.use_mmap = false;
    dry.use_mlock = false;
    dry.check_tensors = false;
    Model model(path, dry);
    Context ctx(model, cparams);
    FitReport r;
    r.devices = ctx.memory();
    r.n_ctx = ctx.n_ctx();
    r.n_layer = model.info().n_layer;
    r.n_gpu_layers = mparams.n_gpu_layers;
    r.file_size = model.info().file_size;
    return r;
}

}  // namespace mullama
