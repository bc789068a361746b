// fuzz-sources: src/config/config.c src/config/config_keys.c src/config/config_check.c src/config/yaml_tree.c src/config/builtin.c src/core/sl.c src/core/arena.c src/core/buf.c
// fuzz-libs: yaml-0.1 (pkg-config --libs yaml-0.1, i.e. -lyaml)
/*
 * fuzz_config.c: the configuration loader on arbitrary bytes. It must never
 * crash, leak or read out of bounds; it either loads or reports errors
 * (which must then be well-formed "FILE..." lines).
 */
#include <stdint.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_buf errors;
    sl_buf_init(&errors, 1 << 16);
    sl_config *c = NULL;
    int rc = sl_config_load_string("fuzz.yaml", (const char *)data, size, &c, &errors);
    if (rc == SL_OK) {
        if (!c) abort();
        /* lookups over whatever was loaded */
        for (size_t i = 0; i < c->nmodels; i++) {
            const sl_model_cfg *m = sl_config_find_model(c, sl_str_from_cstr(c->models[i].name));
            if (!m || m->index > i) abort();
        }
        sl_config_release(c);
    } else {
        if (c) abort();
        if (rc == SL_EPARSE && errors.len && memcmp(errors.p, "fuzz.yaml", 9) != 0) abort();
    }
    sl_buf_free(&errors);
    return 0;
}
