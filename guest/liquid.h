/*
 * liquid.h — the Liquid guest ABI for C (see docs/abi.md).
 *
 * A Liquid ABI function exports `liquid_call` (0 = success):
 *
 *     #include "liquid.h"
 *     LIQUID_EXPORT("liquid_call") int32_t liquid_call(void) {
 *         size_t n;
 *         char *in = liquid_input_all(&n);
 *         ...
 *         return liquid_output_str("done") < 0;
 *     }
 *
 * Build: clang --target=wasm32-wasi -O2 -mexec-model=reactor f.c -o f.wasm
 * Such a reactor also exports `_initialize` (wasi-libc's constructors), which the WASI reactor
 * convention says runs once before any other export. A WASI command (`main`, stdin/stdout)
 * may use these imports too; build it without -mexec-model.
 */
#ifndef LIQUID_H
#define LIQUID_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: negative returns of the host functions. */
#define LIQUID_ERR_NOT_FOUND (-1)   /* no such object, path or function */
#define LIQUID_ERR_DENIED (-2)      /* the manifest does not allow this namespace */
#define LIQUID_ERR_INVALID (-3)     /* bad name, path, JSON value, operation, or UTF-8 */
#define LIQUID_ERR_UNAVAILABLE (-4) /* no replica answered in time; retry later */
#define LIQUID_ERR_TOO_LARGE (-5)   /* over a size limit */
#define LIQUID_ERR_FAILED (-6)      /* called function failed, or write not durable */

/* Log levels. */
#define LIQUID_LOG_ERROR 0
#define LIQUID_LOG_WARN 1
#define LIQUID_LOG_INFO 2
#define LIQUID_LOG_DEBUG 3

#define LIQUID_IMPORT(name) __attribute__((import_module("liquid"), import_name(name)))
#define LIQUID_EXPORT(name) __attribute__((export_name(name)))

/* Raw imports. Pointers and lengths are offsets into this module's memory. Functions
 * returning int64_t return the length of the result (>= 0; fetch it with
 * liquid_result_read) or an error code (< 0; the result then holds a message). */
LIQUID_IMPORT("input_len") int32_t liquid_input_len(void);
LIQUID_IMPORT("input_read") int32_t liquid_input_read(void *ptr, int32_t len);
LIQUID_IMPORT("output") int32_t liquid_output(const void *ptr, int32_t len);
LIQUID_IMPORT("result_read") int32_t liquid_result_read(void *ptr, int32_t len);
LIQUID_IMPORT("obj_get")
int64_t liquid_obj_get(const char *name, int32_t name_len, const char *path, int32_t path_len);
LIQUID_IMPORT("obj_set")
int64_t liquid_obj_set(const char *name, int32_t name_len, const char *path, int32_t path_len,
                       const char *json, int32_t json_len);
LIQUID_IMPORT("obj_inc")
int64_t liquid_obj_inc(const char *name, int32_t name_len, const char *path, int32_t path_len,
                       int64_t by);
LIQUID_IMPORT("obj_del")
int64_t liquid_obj_del(const char *name, int32_t name_len, const char *path, int32_t path_len);
LIQUID_IMPORT("obj_apply")
int64_t liquid_obj_apply(const char *name, int32_t name_len, const char *ops, int32_t ops_len);
LIQUID_IMPORT("obj_list") int64_t liquid_obj_list(const char *prefix, int32_t prefix_len);
LIQUID_IMPORT("log") void liquid_log(int32_t level, const char *ptr, int32_t len);
LIQUID_IMPORT("now_ms") int64_t liquid_now_ms(void);
LIQUID_IMPORT("random") int32_t liquid_random(void *ptr, int32_t len);
LIQUID_IMPORT("call")
int64_t liquid_call_function(const char *name, int32_t name_len, const void *input,
                             int32_t input_len);

/* ---- helpers ---- */

/* The whole input in a malloc'd buffer, NUL-terminated (the NUL is not counted in *len).
 * Returns NULL if out of memory. Free it with free(). */
static inline char *liquid_input_all(size_t *len) {
    int32_t n = liquid_input_len();
    if (n < 0) n = 0;
    char *buf = (char *)malloc((size_t)n + 1);
    if (!buf) return NULL;
    int32_t got = n > 0 ? liquid_input_read(buf, n) : 0;
    if (got < 0) got = 0;
    buf[got] = '\0';
    if (len) *len = (size_t)got;
    return buf;
}

/* Appends a NUL-terminated string to the output; 0 or an error code. */
static inline int32_t liquid_output_str(const char *s) {
    return liquid_output(s, (int32_t)strlen(s));
}

/* A log line from a NUL-terminated string. */
static inline void liquid_log_str(int32_t level, const char *s) {
    liquid_log(level, s, (int32_t)strlen(s));
}

/* After a host call returned `ret` >= 0: the result in a malloc'd, NUL-terminated buffer
 * (its length in *len). After an error (`ret` < 0): the error message the same way (its
 * length is not known in advance, so it is read up to 64 KiB). NULL if out of memory. */
static inline char *liquid_result_alloc(int64_t ret, size_t *len) {
    size_t cap = ret >= 0 ? (size_t)ret : 65536;
    char *buf = (char *)malloc(cap + 1);
    if (!buf) return NULL;
    int32_t got = cap > 0 ? liquid_result_read(buf, (int32_t)cap) : 0;
    if (got < 0) got = 0;
    buf[got] = '\0';
    if (len) *len = (size_t)got;
    return buf;
}

/* obj_get with NUL-terminated strings: the JSON text (malloc'd) or NULL with *err set to the
 * error code (the message can then be fetched with liquid_result_alloc(*err, ...)). */
static inline char *liquid_obj_get_str(const char *name, const char *path, int64_t *err) {
    int64_t r = liquid_obj_get(name, (int32_t)strlen(name), path, (int32_t)strlen(path));
    if (err) *err = r < 0 ? r : 0;
    if (r < 0) return NULL;
    return liquid_result_alloc(r, NULL);
}

/* obj_set with NUL-terminated strings: 0 or an error code. */
static inline int64_t liquid_obj_set_str(const char *name, const char *path, const char *json) {
    return liquid_obj_set(name, (int32_t)strlen(name), path, (int32_t)strlen(path), json,
                          (int32_t)strlen(json));
}

/* obj_inc with NUL-terminated strings: 0 or an error code. */
static inline int64_t liquid_obj_inc_str(const char *name, const char *path, int64_t by) {
    return liquid_obj_inc(name, (int32_t)strlen(name), path, (int32_t)strlen(path), by);
}

#ifdef __cplusplus
}
#endif
#endif /* LIQUID_H */
