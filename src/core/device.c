/* Device names, and whether a device is usable here: the CPU always, CUDA
 * when this build has the backend and a GPU answers (src/cuda/runtime.cu). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pasm/core.h"
#ifdef PASM_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

pasm_status pasm_device_parse(const char *text, pasm_device *out) {
    if (!strcasecmp(text, "cpu")) *out = PASM_DEVICE_CPU;
    else if (!strcasecmp(text, "cuda") || !strcasecmp(text, "gpu")) *out = PASM_DEVICE_CUDA;
    else return pasm_errorf(PASM_ERR_INVALID, "unknown device '%s' (known: cpu, cuda)", text);
    return PASM_OK;
}

const char *pasm_device_name(pasm_device d) { return d == PASM_DEVICE_CUDA ? "cuda" : "cpu"; }

pasm_status pasm_device_check(pasm_device d) {
    if (d == PASM_DEVICE_CPU) return PASM_OK;
    if (d != PASM_DEVICE_CUDA) return pasm_errorf(PASM_ERR_INVALID, "device %d: unknown", (int)d);
#ifdef PASM_HAVE_CUDA
    return pasm_cuda_probe(NULL, 0);
#else
    return pasm_errorf(PASM_ERR_UNSUPPORTED, "--device cuda: this pasm was built without the CUDA "
                                             "backend (nvcc was not found at build time; build "
                                             "with CUDA=1 where the CUDA toolkit and cuDNN are "
                                             "installed)");
#endif
}

size_t pasm_device_peak_bytes(pasm_device d) {
#ifdef PASM_HAVE_CUDA
    if (d == PASM_DEVICE_CUDA) return pasm_cuda_bytes_peak();
#endif
    (void)d;
    return 0;
}

const char *pasm_device_describe(pasm_device d, char *buf, size_t len) {
    if (d == PASM_DEVICE_CPU) {
        snprintf(buf, len, "cpu");
        return buf;
    }
#ifdef PASM_HAVE_CUDA
    if (pasm_cuda_probe(buf, len) != PASM_OK) snprintf(buf, len, "cuda: %s", pasm_last_error());
#else
    snprintf(buf, len, "cuda: not in this build (made without nvcc)");
#endif
    return buf;
}
