/*
 * OpenWit plugin ABI, version 1: the C declaration of what plugin-sdk/src/abi.rs defines for Rust.
 * A test (plugin-sdk/tests) compiles this header and checks that sizes, field offsets and constants
 * match the Rust definitions. docs/plugins.md is the guide.
 *
 * A plugin library exports two functions:
 *   uint32_t openwit_plugin_abi_version(void);        returns OPENWIT_PLUGIN_ABI_VERSION
 *   const OpenwitPlugin *openwit_plugin_entry(void);  returns the library's table (static)
 *
 * Rows cross the boundary as Arrow struct arrays through the Arrow C Data Interface; the columns are
 * the tables of docs/schema.md.
 */
#ifndef OPENWIT_PLUGIN_H
#define OPENWIT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The Arrow C Data Interface, as the Arrow specification defines it. */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  const char *format;
  const char *name;
  const char *metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema **children;
  struct ArrowSchema *dictionary;
  void (*release)(struct ArrowSchema *);
  void *private_data;
};

struct ArrowArray {
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void **buffers;
  struct ArrowArray **children;
  struct ArrowArray *dictionary;
  void (*release)(struct ArrowArray *);
  void *private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

#define OPENWIT_PLUGIN_ABI_VERSION 1

/* What a call returns. */
#define OPENWIT_STATUS_OK 0
#define OPENWIT_STATUS_RETRYABLE 1 /* failed; worth trying again later */
#define OPENWIT_STATUS_PERMANENT 2 /* failed; trying again will not help */
#define OPENWIT_STATUS_PANICKED 3  /* set by the Rust SDK when the plugin's code panicked */

/* OpenwitComponent.kind */
#define OPENWIT_KIND_PROCESSOR 1
#define OPENWIT_KIND_EXPORTER 2

/* OpenwitComponent.signals bits, and the signal handed to create(). */
#define OPENWIT_SIGNAL_TRACES 1
#define OPENWIT_SIGNAL_METRICS 2
#define OPENWIT_SIGNAL_LOGS 4

/*
 * Every function that can fail returns an OPENWIT_STATUS_* value and may set *error to a text the
 * plugin allocated; the host gives it back to the table's free_error().
 *
 * config_json: the component's config section as JSON text, "{}" when the section is empty.
 *
 * process(): the input (a struct array whose children are the table's columns, and its schema) is
 * handed over: the plugin must release both. The plugin writes its output (the same columns, one row
 * per input row) into output/output_schema, or leaves them untouched (release == NULL) to mean
 * "unchanged". keep holds one byte per input row, all 1 on entry: set keep[i] = 0 to drop row i.
 *
 * export(): the input is handed over as for process(); return OPENWIT_STATUS_OK only once the rows are
 * durable where the exporter sends them. flush() (may be NULL) is called once at shutdown.
 *
 * Calls on one instance are never concurrent; they may come from different threads.
 */
typedef struct OpenwitComponent {
  const char *type_name;   /* the type name used in the config: [A-Za-z0-9_]+ */
  const char *description; /* one line for `openwit components` */
  uint32_t kind;           /* OPENWIT_KIND_* */
  uint32_t signals;        /* OPENWIT_SIGNAL_* bits */
  int32_t (*validate)(const char *config_json, char **error);
  int32_t (*create)(const char *config_json, uint32_t signal, void **instance, char **error);
  void (*destroy)(void *instance);
  int32_t (*process)(void *instance, struct ArrowArray *input, struct ArrowSchema *input_schema,
                     struct ArrowArray *output, struct ArrowSchema *output_schema, uint8_t *keep,
                     char **error);
  int32_t (*export_rows)(void *instance, struct ArrowArray *input, struct ArrowSchema *input_schema,
                         char **error);
  int32_t (*flush)(void *instance, char **error);
} OpenwitComponent;

typedef struct OpenwitPlugin {
  uint32_t abi_version;    /* OPENWIT_PLUGIN_ABI_VERSION */
  uint32_t plugin_size;    /* sizeof(OpenwitPlugin) */
  uint32_t component_size; /* sizeof(OpenwitComponent) */
  const char *name;
  const char *version;
  const OpenwitComponent *components;
  size_t component_count;
  void (*free_error)(char *error);
} OpenwitPlugin;

uint32_t openwit_plugin_abi_version(void);
const OpenwitPlugin *openwit_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* OPENWIT_PLUGIN_H */
