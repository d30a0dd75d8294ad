/* graphviz.c - the recorded graph as Graphviz DOT, like micrograd's draw_dot. */
#include "internal.h"

#include <stdlib.h>

typedef struct {
    const ag_tensor **items;
    size_t n, cap;
} vec;

static void push(vec *v, const ag_tensor *t)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        const ag_tensor **p = realloc(v->items, v->cap * sizeof *p);
        if (!p)
            ag_oom(v->cap * sizeof *p);
        v->items = p;
    }
    v->items[v->n++] = t;
}

static bool seen(const vec *v, const ag_tensor *t)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->items[i] == t)
            return true;
    return false;
}

/* A name inside a record label: braces, bars, angle brackets, quotes and
 * backslashes are label syntax there, so a name holding one is escaped. */
static void put_label_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (strchr("{}|<>\"\\", *s))
            fputc('\\', f);
        fputc(*s, f);
    }
}

void ag_write_dot(FILE *f, const ag_tensor *root)
{
    vec all = {0}, todo = {0};
    push(&all, root);
    push(&todo, root);
    while (todo.n) {
        const ag_node *t = ag_node_of(todo.items[--todo.n]);
        for (int i = 0; i < t->ninputs; i++)
            if (!seen(&all, t->inputs[i])) {
                push(&all, t->inputs[i]);
                push(&todo, t->inputs[i]);
            }
    }
    fprintf(f, "digraph ag {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (size_t k = 0; k < all.n; k++) {
        const ag_tensor *t = all.items[k];
        char shape[128];
        ag_shape_str(t, shape, sizeof shape);
        const char *style = t->name ? ", style=filled, fillcolor=lightblue"
                            : t == root ? ", style=filled, fillcolor=lightgrey" : "";
        fprintf(f, "  t%p [shape=record, label=\"{", (const void *)t);
        if (t->name) {
            put_label_text(f, t->name);
            fputs(" | ", f);
        }
        fprintf(f, "%s}\"%s];\n", shape, style);
        const ag_node *n = ag_node_of(t);
        if (n->op) {
            fprintf(f, "  op%p [shape=ellipse, label=\"%s\"];\n", (const void *)t, n->op->name);
            fprintf(f, "  op%p -> t%p;\n", (const void *)t, (const void *)t);
            for (int i = 0; i < n->ninputs; i++)
                fprintf(f, "  t%p -> op%p;\n", (const void *)n->inputs[i], (const void *)t);
        }
    }
    fprintf(f, "}\n");
    free(all.items);
    free(todo.items);
}

bool ag_save_dot(const char *path, const ag_tensor *t)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    ag_write_dot(f, t);
    return fclose(f) == 0;
}
