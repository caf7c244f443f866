/*
 * autograd.c - the define-by-run tape: nodes, the backward pass, grad mode.
 *
 * Each op that sees an input requiring grad records one node for its one output. A node
 * keeps edges to its inputs' nodes (or to the leaves themselves), data-only aliases of
 * what its backward rule needs, and the inputs' shapes. The engine runs the nodes in
 * topological order (Kahn's algorithm over the dependency counts), and after each rule it
 * sums gradients down to the input's shape, so the rules never deal with broadcasting.
 * Backward rules are written with ordinary ops under no-grad mode, so a new backend gets
 * autograd without writing anything.
 */
#include "lunar-impl.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_enabled = true;

bool lunar_grad_enabled(void) { return grad_enabled; }

bool lunar_set_grad_enabled(bool on) {
    bool prev = grad_enabled;
    grad_enabled = on;
    return prev;
}

bool lunar_tensor_requires_grad(const lunar_tensor *t) { return t->requires_grad; }
bool lunar_tensor_is_leaf(const lunar_tensor *t) { return t->grad_fn == NULL; }
lunar_tensor *lunar_tensor_grad(const lunar_tensor *t) { return t->grad; }
const char *lunar_tensor_grad_fn_name(const lunar_tensor *t) {
    return t->grad_fn ? t->grad_fn->name : NULL;
}

void lunar_tensor_set_grad(lunar_tensor *t, lunar_tensor *g) {
    lunar_tensor_retain(g);
    lunar_tensor_release(t->grad);
    t->grad = g;
}

lunar_status lunar_tensor_set_requires_grad(lunar_tensor *t, bool on) {
    if (t->grad_fn) {
        if (on) return LUNAR_OK;
        return lunar_fail(LUNAR_ERR_AUTOGRAD,
                          "requires_grad: only leaves can stop requiring grad; use detach()");
    }
    if (on && !lunar_dtype_is_float(t->dtype))
        return lunar_fail(LUNAR_ERR_DTYPE, "requires_grad: only float tensors can require grad "
                                           "(got %s)",
                          lunar_dtype_name(t->dtype));
    t->requires_grad = on;
    return LUNAR_OK;
}

lunar_status lunar_check_inplace(const char *op, const lunar_tensor *t) {
    if (grad_enabled && t->requires_grad)
        return lunar_fail(LUNAR_ERR_AUTOGRAD,
                          "%s: in-place operation on a tensor that requires grad (%s); use the "
                          "out-of-place op, or run it under lunar.no_grad",
                          op, t->grad_fn ? "a result of another op" : "a leaf");
    return LUNAR_OK;
}

void lunar_hooks_free(lunar_hook *h) {
    while (h) {
        lunar_hook *next = h->next;
        if (h->drop) h->drop(h->ud);
        free(h);
        h = next;
    }
}

/* ---- nodes ---- */

lunar_node *lunar_node_begin(const char *name, lunar_backward_fn fn, int n, lunar_tensor **in) {
    if (!grad_enabled) return NULL;
    bool any = false;
    for (int k = 0; k < n; k++) any |= in[k] && in[k]->requires_grad;
    if (!any) return NULL;
    lunar_node *node = calloc(1, sizeof *node);
    lunar_edge *edges = calloc((size_t)n, sizeof *edges);
    if (!node || !edges) {
        free(node);
        free(edges);
        return NULL; /* the caller's op still succeeds; the error surfaces in backward */
    }
    node->refcount = 1;
    node->name = name;
    node->backward = fn;
    node->n_inputs = n;
    node->next = edges;
    for (int k = 0; k < n; k++) {
        lunar_tensor *t = in[k];
        if (!t) continue;
        edges[k].ndim = t->ndim;
        memcpy(edges[k].shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        edges[k].dtype = t->dtype;
        if (!t->requires_grad) continue;
        if (t->grad_fn) {
            edges[k].fn = t->grad_fn;
            t->grad_fn->refcount++;
        } else {
            edges[k].leaf = t;
            lunar_tensor_retain(t);
        }
    }
    return node;
}

void lunar_node_save(lunar_node *n, int k, const lunar_tensor *t) {
    n->saved[k] = lunar_tensor_alias(t, t->ndim, t->shape, t->strides, t->offset);
    n->saved_version[k] = t->storage->version;
}

void lunar_node_finish(lunar_node *n, lunar_tensor *out) {
    lunar_node_release(out->grad_fn);
    out->grad_fn = n;
    out->requires_grad = true;
}

bool lunar_node_needs(const lunar_node *n, int k) {
    return n->next[k].fn != NULL || n->next[k].leaf != NULL;
}

lunar_status lunar_node_saved(lunar_node *n, int k, lunar_tensor **out) {
    if (n->released || !n->saved[k])
        return lunar_fail(LUNAR_ERR_AUTOGRAD,
                          "%s: trying to backward through the graph a second time; pass "
                          "retain_graph = true to the first backward",
                          n->name);
    if (n->saved[k]->storage->version != n->saved_version[k])
        return lunar_fail(LUNAR_ERR_AUTOGRAD,
                          "%s: a tensor needed for the gradient was modified by an in-place "
                          "operation",
                          n->name);
    *out = n->saved[k];
    return LUNAR_OK;
}

static void node_free_saved(lunar_node *n) {
    for (int k = 0; k < LUNAR_NODE_SAVED; k++) {
        lunar_tensor_release(n->saved[k]);
        n->saved[k] = NULL;
    }
    if (n->ctx_free && n->ctx) n->ctx_free(n->ctx);
    n->ctx = NULL;
    n->released = true;
}

/* Iterative, so that releasing a long chain (an unrolled RNN) cannot overflow the stack. */
void lunar_node_release(lunar_node *n) {
    if (!n || --n->refcount > 0) return;
    size_t cap = 16, len = 0;
    lunar_node **stack = malloc(cap * sizeof *stack);
    lunar_node *cur = n;
    for (;;) {
        for (int k = 0; k < cur->n_inputs; k++) {
            lunar_node *fn = cur->next[k].fn;
            lunar_tensor_release(cur->next[k].leaf);
            if (fn && --fn->refcount == 0) {
                if (len == cap) {
                    lunar_node **bigger = stack ? realloc(stack, 2 * cap * sizeof *stack) : NULL;
                    if (!bigger) { /* cannot grow: leak the rest rather than recurse */
                        continue;
                    }
                    stack = bigger;
                    cap *= 2;
                }
                stack[len++] = fn;
            }
        }
        node_free_saved(cur);
        lunar_tensor_release(cur->acc);
        lunar_hooks_free(cur->hooks);
        free(cur->next);
        free(cur);
        if (len == 0) break;
        cur = stack[--len];
    }
    free(stack);
}

/* ---- the engine ---- */

static lunar_status run_hooks(lunar_hook *h, lunar_tensor **g) {
    for (; h; h = h->next) {
        lunar_tensor *rep = NULL;
        LUNAR_CHECK(h->fn(h->ud, *g, &rep));
        if (rep) {
            lunar_tensor_release(*g);
            *g = rep;
        }
    }
    return LUNAR_OK;
}

/* *acc += g, out of place (acc may be a view someone else holds). Consumes g. */
static lunar_status accumulate(lunar_tensor **acc, lunar_tensor *g) {
    if (!*acc) {
        *acc = g;
        return LUNAR_OK;
    }
    lunar_tensor *sum;
    lunar_status st = lunar_binary(&sum, LUNAR_OP_ADD, *acc, g);
    lunar_tensor_release(g);
    if (st != LUNAR_OK) return st;
    lunar_tensor_release(*acc);
    *acc = sum;
    return LUNAR_OK;
}

/* Whether a leaf may take g as its gradient without a copy (PyTorch's AccumulateGrad
 * steals the same way): nobody else holds g or its storage, and g is a dense tensor of the
 * leaf's shape and dtype. A weight's gradient then costs no pass after the GEMM that made
 * it when the grads were cleared with zero_grad(true). */
static bool steals(const lunar_tensor *leaf, const lunar_tensor *g) {
    if (g->refcount != 1 || g->storage->refcount != 1 || g->offset != 0 || g->requires_grad ||
        g->grad_fn || g->hooks || g->dtype != leaf->dtype || g->ndim != leaf->ndim ||
        !lunar_tensor_is_contiguous(g))
        return false;
    for (int d = 0; d < g->ndim; d++)
        if (g->shape[d] != leaf->shape[d]) return false;
    return lunar_tensor_numel(g) * (int64_t)lunar_dtype_size(g->dtype) ==
           (int64_t)g->storage->nbytes;
}

static lunar_status accumulate_leaf(lunar_tensor *leaf, lunar_tensor *g) {
    lunar_status st = run_hooks(leaf->hooks, &g);
    if (st != LUNAR_OK) {
        lunar_tensor_release(g);
        return st;
    }
    if (!leaf->grad && steals(leaf, g)) { /* the gradient becomes the leaf's, as it is */
        leaf->grad = g;
        return LUNAR_OK;
    }
    if (!leaf->grad) {
        /* own a dense copy: g may be a broadcast view, or held by the graph */
        lunar_tensor *c;
        st = lunar_tensor_new(&c, g->ndim, g->shape, leaf->dtype, g);
        if (st == LUNAR_OK) st = lunar_raw_copy(c, g);
        if (st == LUNAR_OK) leaf->grad = c;
        else lunar_tensor_release(c);
    } else {
        st = lunar_binary_(leaf->grad, LUNAR_OP_ADD, g);
    }
    lunar_tensor_release(g);
    return st;
}

typedef struct engine {
    lunar_node **all; /* every node reached, for the reset at the end */
    size_t n_all, cap_all;
    lunar_node **ready;
    size_t n_ready;
    /* capture mode (autograd.grad): gradients land here, not in .grad */
    int n_in;
    lunar_tensor **inputs;
    lunar_tensor **captured;
    /* each leaf's gradient, summed over all its uses, so that its hooks run once */
    lunar_tensor **leaves, **leaf_acc;
    size_t n_leaves, cap_leaves;
} engine;

static int input_index(const struct engine *e, const lunar_tensor *leaf, const lunar_node *fn);

/* Adds g (consumed) to the pass's sum for leaf. */
static lunar_status leaf_add(engine *e, lunar_tensor *leaf, lunar_tensor *g) {
    size_t i = 0;
    while (i < e->n_leaves && e->leaves[i] != leaf) i++;
    if (i == e->n_leaves) {
        if (e->n_leaves == e->cap_leaves) {
            size_t cap = e->cap_leaves ? 2 * e->cap_leaves : 16;
            lunar_tensor **l = realloc(e->leaves, cap * sizeof *l);
            if (l) e->leaves = l;
            lunar_tensor **a = l ? realloc(e->leaf_acc, cap * sizeof *a) : NULL;
            if (a) e->leaf_acc = a;
            if (!l || !a) {
                lunar_tensor_release(g);
                return lunar_fail(LUNAR_ERR_MEMORY, "backward: out of memory");
            }
            e->cap_leaves = cap;
        }
        e->leaves[i] = leaf;
        e->leaf_acc[i] = NULL;
        e->n_leaves++;
    }
    return accumulate(&e->leaf_acc[i], g);
}

/* After the pass: runs each leaf's hooks on its whole gradient, then stores it in .grad or,
 * for autograd.grad, in the captured slot. Releases the sums. */
static lunar_status flush_leaves(engine *e, lunar_status st) {
    for (size_t i = 0; i < e->n_leaves; i++) {
        lunar_tensor *g = e->leaf_acc[i];
        e->leaf_acc[i] = NULL;
        if (st != LUNAR_OK) {
            lunar_tensor_release(g);
        } else if (e->captured) {
            st = run_hooks(e->leaves[i]->hooks, &g);
            if (st == LUNAR_OK) e->captured[input_index(e, e->leaves[i], NULL)] = g;
            else lunar_tensor_release(g);
        } else {
            st = accumulate_leaf(e->leaves[i], g);
        }
    }
    free(e->leaves);
    free(e->leaf_acc);
    return st;
}

static lunar_status push_all(engine *e, lunar_node *n) {
    if (e->n_all == e->cap_all) {
        size_t cap = e->cap_all ? 2 * e->cap_all : 64;
        lunar_node **a = realloc(e->all, cap * sizeof *a);
        if (!a) return lunar_fail(LUNAR_ERR_MEMORY, "backward: out of memory");
        e->all = a;
        e->cap_all = cap;
    }
    e->all[e->n_all++] = n;
    return LUNAR_OK;
}

/* Visits every node reachable from root and counts, for each, the edges that lead to it. */
static lunar_status discover(engine *e, lunar_node *root) {
    if (root->visited) return LUNAR_OK;
    size_t start = e->n_all;
    root->visited = true;
    LUNAR_CHECK(push_all(e, root));
    for (size_t i = start; i < e->n_all; i++) { /* e->all doubles as the BFS queue */
        lunar_node *n = e->all[i];
        for (int k = 0; k < n->n_inputs; k++) {
            lunar_node *fn = n->next[k].fn;
            if (!fn) continue;
            fn->deps++;
            if (!fn->visited) {
                fn->visited = true;
                LUNAR_CHECK(push_all(e, fn));
            }
        }
    }
    return LUNAR_OK;
}

static int input_index(const struct engine *e, const lunar_tensor *leaf, const lunar_node *fn) {
    for (int i = 0; i < e->n_in; i++) {
        if (leaf && e->inputs[i] == leaf) return i;
        if (fn && e->inputs[i]->grad_fn == fn) return i;
    }
    return -1;
}

/* Delivers gradient g (consumed) to the far end of edge. */
static lunar_status deliver(engine *e, const lunar_edge *edge, lunar_tensor *g) {
    lunar_tensor *r;
    lunar_status st = lunar_sum_to(&r, g, edge->ndim, edge->shape);
    lunar_tensor_release(g);
    if (st != LUNAR_OK) return st;
    if (r->dtype != edge->dtype && lunar_dtype_is_float(edge->dtype)) {
        lunar_tensor *c;
        st = lunar_raw_cast(&c, r, edge->dtype);
        lunar_tensor_release(r);
        if (st != LUNAR_OK) return st;
        r = c;
    }
    if (edge->fn) return accumulate(&edge->fn->acc, r);
    if (e->captured && input_index(e, edge->leaf, NULL) < 0) {
        lunar_tensor_release(r);
        return LUNAR_OK;
    }
    return leaf_add(e, edge->leaf, r);
}

static lunar_status run_node(engine *e, lunar_node *n, bool retain_graph) {
    lunar_tensor *g = n->acc;
    n->acc = NULL;
    lunar_tensor *gin[64];
    lunar_tensor **gins = n->n_inputs <= 64 ? gin : calloc((size_t)n->n_inputs, sizeof *gins);
    if (!gins) {
        lunar_tensor_release(g);
        return lunar_fail(LUNAR_ERR_MEMORY, "backward: out of memory");
    }
    memset(gins, 0, sizeof *gins * (size_t)n->n_inputs);
    lunar_status st = LUNAR_OK;
    if (g) {
        st = run_hooks(n->hooks, &g);
        if (st == LUNAR_OK && e->captured) {
            int i = input_index(e, NULL, n);
            if (i >= 0) {
                lunar_tensor_retain(g);
                st = accumulate(&e->captured[i], g);
            }
        }
        if (st == LUNAR_OK && n->released)
            st = lunar_fail(LUNAR_ERR_AUTOGRAD,
                            "%s: trying to backward through the graph a second time; pass "
                            "retain_graph = true to the first backward",
                            n->name);
        if (st == LUNAR_OK) st = n->backward(n, g, gins);
    }
    for (int k = 0; k < n->n_inputs; k++) {
        const lunar_edge *edge = &n->next[k];
        if (st == LUNAR_OK && gins[k] && (edge->fn || edge->leaf)) {
            st = deliver(e, edge, gins[k]);
        } else {
            lunar_tensor_release(gins[k]);
        }
        if (edge->fn && --edge->fn->deps == 0) e->ready[e->n_ready++] = edge->fn;
    }
    lunar_tensor_release(g);
    if (gins != gin) free(gins);
    if (!retain_graph) node_free_saved(n);
    return st;
}

static lunar_status run_engine(engine *e, int n_roots, lunar_tensor **roots,
                               lunar_tensor **grads, bool retain_graph) {
    lunar_status st = LUNAR_OK;
    bool prev = lunar_set_grad_enabled(false);
    for (int r = 0; r < n_roots && st == LUNAR_OK; r++)
        if (roots[r]->grad_fn) st = discover(e, roots[r]->grad_fn);
    if (st == LUNAR_OK) {
        e->ready = malloc((e->n_all + 1) * sizeof *e->ready);
        if (!e->ready) st = lunar_fail(LUNAR_ERR_MEMORY, "backward: out of memory");
    }
    /* seed the roots */
    for (int r = 0; r < n_roots && st == LUNAR_OK; r++) {
        lunar_tensor *g = grads[r];
        lunar_tensor_retain(g);
        lunar_tensor *root = roots[r];
        if (root->grad_fn) {
            st = accumulate(&root->grad_fn->acc, g);
        } else {
            lunar_edge edge = {.leaf = root, .ndim = root->ndim, .dtype = root->dtype};
            memcpy(edge.shape, root->shape, sizeof(int64_t) * (size_t)root->ndim);
            st = deliver(e, &edge, g);
        }
    }
    for (int r = 0; r < n_roots && st == LUNAR_OK; r++) {
        lunar_node *n = roots[r]->grad_fn;
        if (n && n->deps == 0) {
            n->deps = -1; /* queued */
            e->ready[e->n_ready++] = n;
        }
    }
    while (st == LUNAR_OK && e->n_ready > 0) {
        lunar_node *n = e->ready[--e->n_ready];
        st = run_node(e, n, retain_graph);
    }
    st = flush_leaves(e, st);
    for (size_t i = 0; i < e->n_all; i++) {
        lunar_node *n = e->all[i];
        n->visited = false;
        n->deps = 0;
        lunar_tensor_release(n->acc);
        n->acc = NULL;
    }
    free(e->all);
    free(e->ready);
    lunar_set_grad_enabled(prev);
    return st;
}

static lunar_status default_grad(lunar_tensor *root, lunar_tensor *grad, lunar_tensor **out) {
    if (grad) {
        if (!lunar_shape_equal(grad->ndim, grad->shape, root->ndim, root->shape)) {
            char a[128], b[128];
            return lunar_fail(LUNAR_ERR_SHAPE, "backward: gradient of shape %s for a tensor of "
                                               "shape %s",
                              lunar_shape_str(a, sizeof a, grad->ndim, grad->shape),
                              lunar_shape_str(b, sizeof b, root->ndim, root->shape));
        }
        lunar_tensor_retain(grad);
        *out = grad;
        return LUNAR_OK;
    }
    if (lunar_tensor_numel(root) != 1) {
        char a[128];
        return lunar_fail(LUNAR_ERR_SHAPE,
                          "backward: a gradient can be implied only for a tensor of one element "
                          "(got %s); pass the gradient",
                          lunar_shape_str(a, sizeof a, root->ndim, root->shape));
    }
    LUNAR_CHECK(lunar_tensor_new(out, root->ndim, root->shape, root->dtype, root));
    lunar_status st = LUNAR_KERNEL(root->storage->backend, fill, *out, 1);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_backward(lunar_tensor *root, lunar_tensor *grad, bool retain_graph) {
    if (!root->requires_grad)
        return lunar_fail(LUNAR_ERR_AUTOGRAD,
                          "backward: the tensor does not require grad and has no grad_fn");
    lunar_tensor *g;
    LUNAR_CHECK(default_grad(root, grad, &g));
    engine e = {0};
    lunar_status st = run_engine(&e, 1, &root, &g, retain_graph);
    lunar_tensor_release(g);
    return st;
}

lunar_status lunar_autograd_grad(int n_out, lunar_tensor **outputs, lunar_tensor **grad_outputs,
                                 int n_in, lunar_tensor **inputs, lunar_tensor **grads,
                                 bool retain_graph) {
    for (int i = 0; i < n_in; i++) {
        grads[i] = NULL;
        if (!inputs[i]->requires_grad)
            return lunar_fail(LUNAR_ERR_AUTOGRAD,
                              "autograd.grad: input %d does not require grad", i + 1);
    }
    lunar_tensor **g = calloc((size_t)n_out + 1, sizeof *g);
    if (!g) return lunar_fail(LUNAR_ERR_MEMORY, "autograd.grad: out of memory");
    lunar_status st = LUNAR_OK;
    for (int r = 0; r < n_out && st == LUNAR_OK; r++) {
        if (!outputs[r]->requires_grad)
            st = lunar_fail(LUNAR_ERR_AUTOGRAD,
                            "autograd.grad: output %d does not require grad", r + 1);
        else
            st = default_grad(outputs[r], grad_outputs ? grad_outputs[r] : NULL, &g[r]);
    }
    if (st == LUNAR_OK) {
        engine e = {.n_in = n_in, .inputs = inputs, .captured = grads};
        st = run_engine(&e, n_out, outputs, g, retain_graph);
    }
    for (int r = 0; r < n_out; r++) lunar_tensor_release(g[r]);
    free(g);
    if (st != LUNAR_OK)
        for (int i = 0; i < n_in; i++) {
            lunar_tensor_release(grads[i]);
            grads[i] = NULL;
        }
    return st;
}
