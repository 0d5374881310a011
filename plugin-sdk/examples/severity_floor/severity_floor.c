/*
 * Example plugin in C: `severity_floor`, a logs processor that drops records whose severity_number is
 * below a floor (records without a severity, 0, are dropped too when the floor is above 0).
 *
 *   processors:
 *     severity_floor:
 *       min_severity_number: 9    # INFO; the default
 *
 * It reads one column and never builds an output: it clears the keep flags of the rows to drop and
 * leaves its output released, which tells OpenWit the rows are unchanged.
 *
 * Build: cc -shared -fPIC -O2 -I plugin-sdk/include -o libseverity_floor.so severity_floor.c
 */
#include "openwit_plugin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  long min;
} Floor;

static char *error_text(const char *text) {
  char *e = malloc(strlen(text) + 1);
  if (e) strcpy(e, text);
  return e;
}

/* The value of "min_severity_number" in the config's JSON (a flat object), 9 when absent. */
static int32_t parse(const char *json, long *min, char **error) {
  *min = 9;
  const char *key = json ? strstr(json, "\"min_severity_number\"") : NULL;
  if (!key) return OPENWIT_STATUS_OK;
  const char *p = strchr(key + strlen("\"min_severity_number\""), ':');
  if (!p) goto bad;
  p++;
  while (isspace((unsigned char)*p)) p++;
  char *end;
  long v = strtol(p, &end, 10);
  if (end == p || v < 0 || v > 24) goto bad;
  *min = v;
  return OPENWIT_STATUS_OK;
bad:
  *error = error_text("min_severity_number: must be a severity number from 0 to 24");
  return OPENWIT_STATUS_PERMANENT;
}

static int32_t validate(const char *config_json, char **error) {
  long min;
  return parse(config_json, &min, error);
}

static int32_t create(const char *config_json, uint32_t signal, void **instance, char **error) {
  if (signal != OPENWIT_SIGNAL_LOGS) {
    *error = error_text("severity_floor works on logs only");
    return OPENWIT_STATUS_PERMANENT;
  }
  long min;
  int32_t status = parse(config_json, &min, error);
  if (status != OPENWIT_STATUS_OK) return status;
  Floor *f = malloc(sizeof(Floor));
  if (!f) {
    *error = error_text("out of memory");
    return OPENWIT_STATUS_RETRYABLE;
  }
  f->min = min;
  *instance = f;
  return OPENWIT_STATUS_OK;
}

static void destroy(void *instance) { free(instance); }

static int32_t process(void *instance, struct ArrowArray *input, struct ArrowSchema *input_schema,
                       struct ArrowArray *output, struct ArrowSchema *output_schema, uint8_t *keep,
                       char **error) {
  (void)output;
  (void)output_schema; /* left released: the rows are unchanged */
  const Floor *f = instance;
  int32_t status = OPENWIT_STATUS_OK;
  int64_t column = -1;
  for (int64_t i = 0; i < input_schema->n_children; i++) {
    if (strcmp(input_schema->children[i]->name, "severity_number") == 0) column = i;
  }
  if (column < 0 || strcmp(input_schema->children[column]->format, "i") != 0) {
    *error = error_text("the rows have no int32 severity_number column: not the logs table");
    status = OPENWIT_STATUS_PERMANENT;
  } else {
    const struct ArrowArray *sev = input->children[column];
    const uint8_t *valid = sev->buffers[0];
    const int32_t *values = sev->buffers[1];
    for (int64_t row = 0; row < input->length; row++) {
      int64_t i = row + input->offset + sev->offset;
      int is_valid = valid == NULL || (valid[i / 8] >> (i % 8)) & 1;
      int32_t n = is_valid ? values[i] : 0;
      if (n < f->min) keep[row] = 0;
    }
  }
  /* The input is ours: release it, as the C Data Interface asks of a consumer. */
  input->release(input);
  input_schema->release(input_schema);
  return status;
}

static void free_error(char *error) { free(error); }

static const OpenwitComponent components[] = {{
    .type_name = "severity_floor",
    .description = "drops log records below a severity number (example plugin, in C)",
    .kind = OPENWIT_KIND_PROCESSOR,
    .signals = OPENWIT_SIGNAL_LOGS,
    .validate = validate,
    .create = create,
    .destroy = destroy,
    .process = process,
    .export_rows = NULL,
    .flush = NULL,
}};

static const OpenwitPlugin plugin = {
    .abi_version = OPENWIT_PLUGIN_ABI_VERSION,
    .plugin_size = sizeof(OpenwitPlugin),
    .component_size = sizeof(OpenwitComponent),
    .name = "openwit-plugin-severity-floor",
    .version = "0.1.0",
    .components = components,
    .component_count = 1,
    .free_error = free_error,
};

uint32_t openwit_plugin_abi_version(void) { return OPENWIT_PLUGIN_ABI_VERSION; }

const OpenwitPlugin *openwit_plugin_entry(void) { return &plugin; }
