/*
 * yaml_tree.h: a small YAML document tree (maps, sequences, scalars) built
 * from libyaml events, with the line and column of every node.
 *
 * The configuration loader validates this tree against its key tables; it is
 * not a general YAML library. On purpose it rejects anchors, aliases and tags
 * (no billion-laughs expansion, no type games), more than one document,
 * duplicate keys and non-scalar keys, and it caps depth and node count.
 * `${VAR}` / `${VAR:-default}` in scalar values (not keys) are expanded from
 * the environment while the tree is built. Everything lives in the caller's
 * arena.
 */
#ifndef SL_CONFIG_YAML_TREE_H
#define SL_CONFIG_YAML_TREE_H

#include "core/arena.h"
#include "core/sl.h"

typedef enum { SL_YN_SCALAR = 0, SL_YN_SEQ, SL_YN_MAP } sl_yn_kind;

typedef struct sl_ynode sl_ynode;
struct sl_ynode {
    sl_yn_kind kind;
    int line, col;         /* 1-based; 0 for synthesized nodes (defaults) */
    bool plain;            /* scalar written without quotes: may mean null */
    sl_str val;            /* scalar text, NUL-terminated, env-expanded for values */
    sl_ynode *key;         /* for a map value: its key (a scalar) */
    sl_ynode *first, *last, *next; /* children: seq items or map values in order */
    size_t n;              /* number of children */
};

/* Caps: the loader reads at most SL_YAML_MAX_BYTES; deeper or bigger trees are rejected. */
#define SL_YAML_MAX_BYTES (4u << 20)
#define SL_YAML_MAX_DEPTH 64
#define SL_YAML_MAX_NODES 200000
#define SL_YAML_MAX_EXPANDED (1u << 20) /* one scalar after ${} expansion */

/* Called once per problem found while building the tree. */
typedef void (*sl_yaml_err_fn)(void *ud, int line, int col, const char *msg);

/*
 * Parses text into *root (NULL for an empty document). Returns SL_OK,
 * SL_EPARSE after reporting through err, or SL_ENOMEM. On SL_EPARSE *root is
 * still set when only values were bad (duplicate key, bad ${...}) so that the
 * caller can go on and report its own errors too; it is NULL when the YAML
 * itself was broken. expand_env = false keeps scalars verbatim (used for
 * built-in default texts).
 */
int sl_yaml_tree_parse(sl_arena *a, const char *text, size_t len, bool expand_env, sl_ynode **root,
                       sl_yaml_err_fn err, void *ud);

/* A scalar node holding text (for defaults); NULL on allocation failure. */
sl_ynode *sl_yaml_scalar(sl_arena *a, const char *text);

/* Value of key in a map node, or NULL. */
sl_ynode *sl_yaml_map_get(const sl_ynode *map, const char *key);

/* True for a plain scalar that YAML reads as null: empty, "~", "null". */
bool sl_yaml_is_null(const sl_ynode *n);

/*
 * Expands ${VAR} and ${VAR:-default} in s (a "$${" writes a literal "${").
 * Returns SL_OK with *out (arena), SL_EPARSE with *why set, or SL_ENOMEM.
 */
int sl_yaml_expand_env(sl_arena *a, sl_str s, sl_str *out, const char **why);

#endif
