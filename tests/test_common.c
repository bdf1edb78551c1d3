/* Status codes, errors, dtypes and the version. */
#include "check.h"
#include "internal.h"

int main(void) {
    CHECK_INT(vram_version_number(), VRAM_VERSION_NUMBER);
    CHECK_STR(vram_version_string(), "0.1.0");
    CHECK_STR(vram_strerror(VRAM_OK), "success");
    CHECK_STR(vram_strerror(VRAM_E_DOES_NOT_FIT), "model does not fit in the memory available");
    CHECK_STR(vram_strerror(12345), "unknown status code");
    CHECK_INT(vram_fail(VRAM_E_RANGE, "threshold %d", 7), VRAM_E_RANGE);
    CHECK_STR(vram_last_error(), "threshold 7");
    CHECK_INT(vram_dtype_size(VRAM_DTYPE_BF16), 2);
    CHECK_INT(vram_dtype_size(VRAM_DTYPE_F8_E4M3), 1);
    CHECK_INT(vram_dtype_size(VRAM_DTYPE_F64), 8);
    CHECK_INT(vram_dtype_from_name("F8_E4M3"), VRAM_DTYPE_F8_E4M3);
    CHECK_INT(vram_dtype_from_name("fp8_e4m3fn"), VRAM_DTYPE_F8_E4M3);
    CHECK_INT(vram_dtype_from_name("bfloat16"), VRAM_DTYPE_BF16);
    CHECK_INT(vram_dtype_from_name("nonsense"), VRAM_DTYPE_UNKNOWN);
    CHECK(vram_name_matches("RTX-4090", "rtx 4090"));
    CHECK(!vram_name_matches("RTX 4090", "RTX 409"));
    vram_strbuf b = {0};
    vram_strbuf_printf(&b, "%s %d", "a", 1);
    for (int i = 0; i < 100; i++)
        vram_strbuf_printf(&b, "%0100d", i);
    char *s;
    CHECK_OK(vram_strbuf_finish(&b, &s));
    CHECK_INT(strlen(s), 3 + 100 * 100);
    vram_free(s);
    CHECK_DONE();
}
