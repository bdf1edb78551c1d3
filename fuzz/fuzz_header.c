/* libFuzzer target: any bytes as a size-prefixed safetensors header, then
 * the layout JSON of whatever parsed. Must never crash, leak or abort. */
#include "vram.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vram_layout *layout = NULL;
    if (vram_layout_parse_header(data, size, &layout) != VRAM_OK)
        return 0;
    char *json = NULL;
    if (vram_layout_json(layout, true, &json) == VRAM_OK)
        vram_free(json);
    vram_layout_info info = {.size = sizeof info};
    vram_layout_get_info(layout, &info);
    for (int b = 0; b < info.block_count; b++) {
        vram_block_info bi = {.size = sizeof bi};
        vram_layout_block(layout, b, &bi);
    }
    vram_layout_free(layout);
    return 0;
}
