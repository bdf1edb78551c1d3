/* nvml.h - NVML, loaded at run time (private to libvram).
 *
 * nvtop style: only the types used are declared, libnvidia-ml.so.1 (or
 * $VRAM_NVML_LIBRARY) is dlopened once, required symbols fail the load,
 * optional ones may be missing, and every field group has a known flag.
 * A missing NVML only means these fields stay unknown. */
#ifndef VRAM_NVML_H
#define VRAM_NVML_H

#include <stdbool.h>
#include <stdint.h>

typedef struct vram_nvml_device {
    char name[96];
    bool name_known;
    char uuid[96]; /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
    bool uuid_known;
    uint64_t total_bytes, used_bytes, free_bytes; /* all processes */
    bool memory_known;
    int pcie_gen_current, pcie_width_current, pcie_gen_max, pcie_width_max;
    bool pcie_known;
} vram_nvml_device;

/* Loads and initialises NVML once per process; false with the reason in
 * *why (static text) when it is not usable. */
bool vram_nvml_available(const char **why);

/* Queries the device with this UUID (as CUDA formats it); false when NVML
 * or the device is missing. Fields that fail stay unknown. */
bool vram_nvml_query_uuid(const char *uuid, vram_nvml_device *out);

#endif
