/* A stand-in libcudart.so for machines without a GPU: the C signatures of the CUDA
 * runtime calls edgetl makes through ctypes (runtime/cudart.py), with host memory for
 * device memory. DRIVER and RUNTIME (CUDA's integer versions) are set when compiling; a
 * runtime of a newer major than the driver refuses cudaSetDevice as the real one does. */
#include <stdlib.h>
#include <string.h>

#ifndef DRIVER
#define DRIVER 12060
#endif
#ifndef RUNTIME
#define RUNTIME 12060
#endif

static int live = 0;     /* allocations not yet freed */
static int streams = 0;  /* streams not yet destroyed */
static int copies = 0;

int fake_live(void) { return live; }
int fake_streams(void) { return streams; }
int fake_copies(void) { return copies; }

const char *cudaGetErrorName(int err) {
    switch (err) {
    case 0: return "cudaSuccess";
    case 35: return "cudaErrorInsufficientDriver";
    case 101: return "cudaErrorInvalidDevice";
    default: return "cudaErrorUnknown";
    }
}

int cudaDriverGetVersion(int *v) { *v = DRIVER; return 0; }
int cudaRuntimeGetVersion(int *v) { *v = RUNTIME; return 0; }

int cudaSetDevice(int device) {
    if (RUNTIME / 1000 > DRIVER / 1000) return 35;
    return device == 0 ? 0 : 101;
}

int cudaGetDeviceProperties_v2(void *prop, int device) {
    if (device != 0) return 101;
    memset(prop, 0, 1024);
    strcpy((char *)prop, "Fake GPU (libcudart)");
    return 0;
}

int cudaDeviceGetAttribute(int *value, int attr, int device) {
    if (device != 0) return 101;
    *value = attr == 75 ? 8 : attr == 76 ? 7 : 0;
    return 0;
}

int cudaMalloc(void **p, size_t n) { *p = malloc(n); live++; return *p ? 0 : 2; }
int cudaMallocHost(void **p, size_t n) { *p = malloc(n); live++; return *p ? 0 : 2; }
int cudaFree(void *p) { free(p); live--; return 0; }
int cudaFreeHost(void *p) { free(p); live--; return 0; }

int cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *stream) {
    if (stream == 0 || kind < 1 || kind > 2) return 1; /* its own stream, host<->device only */
    memcpy(dst, src, n);
    copies++;
    return 0;
}

int cudaStreamCreate(void **s) { *s = (void *)0x5000; streams++; return 0; }
int cudaStreamSynchronize(void *s) { return s ? 0 : 1; }
int cudaStreamDestroy(void *s) { streams--; return 0; }
