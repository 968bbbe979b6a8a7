/* Every op in ops.def is wired up: a name and a family, a validator, a cpu implementation (the
   reference every backend is checked against and the end of every fallback chain) and at
   least one case in the op harness's table, named after the op so that test-backend-ops -o
   NAME selects it. The op a case covers is the one its build computes on the cpu backend. */
#include <stdio.h>
#include <string.h>

#include "backend-impl.h"
#include "check.h"
#include "harness.h"
#include "ops-impl.h"

/* The op a case's node computes, KILN_OP_NONE when it does not build. */
static kiln_op case_op(kiln_backend_t cpu, const tcase *c) {
    tctx x;
    memset(&x, 0, sizeof x);
    x.be = cpu;
    kiln_status st = c->kind->build(c, &x);
    kiln_op op = st ? KILN_OP_NONE : x.out.op;
    if (st)
        printf("  case '%s' does not build on cpu: %s: %s\n", c->name, kiln_status_name(st),
               kiln_last_error());
    kiln_case_release(&x);
    return op;
}

int main(void) {
    kiln_backend_t cpu;
    if (kiln_backend_init("cpu", NULL, &cpu)) {
        fprintf(stderr, "cannot start the cpu backend: %s\n", kiln_last_error());
        return 1;
    }

    /* The harness's cases, by the op they compute. */
    int ncases, cases[KILN_OP_COUNT] = {0}, unusable = 0;
    const tcase *list = kiln_cases(&ncases);
    for (int i = 0; i < ncases; i++) {
        const tcase *c = &list[i];
        kiln_op op = case_op(cpu, c);
        if (op <= KILN_OP_NONE || op >= KILN_OP_COUNT) {
            printf("  case '%s' computes no op (%d)\n", c->name, (int)op);
            unusable++;
            continue;
        }
        const char *name = kiln_op_name(op);
        size_t n = strcspn(c->name, " ");
        if (strlen(name) != n || strncmp(c->name, name, n)) {
            printf("  case '%s' computes %s but is not named after it\n", c->name, name);
            unusable++;
            continue;
        }
        cases[op]++;
    }
    CHECK(ncases > 0 && !unusable,
          "%d of the harness's %d cases build no op or are not named after theirs", unusable,
          ncases);

    CHECK(!strcmp(kiln_op_name(KILN_OP_NONE), "none") && !kiln_op_validator(KILN_OP_NONE) &&
              !kiln_cpu_ops[KILN_OP_NONE],
          "KILN_OP_NONE is no op");
    for (int op = KILN_OP_NONE + 1; op < KILN_OP_COUNT; op++) {
        const char *name = kiln_op_name((kiln_op)op), *family = kiln_op_family((kiln_op)op);
        CHECK(name && *name && strcmp(name, "?") && strcmp(name, "none"), "op %d has a name", op);
        CHECK(family && *family && strcmp(family, "?"), "%s has a family", name);
        int same = 0;
        for (int o = KILN_OP_NONE + 1; o < op; o++) same += !strcmp(kiln_op_name((kiln_op)o), name);
        CHECK(!same, "%s is the name of another op too", name);
        CHECK(kiln_op_validator((kiln_op)op) != NULL, "%s has a validator (kiln_validate_%s)", name,
              name);
        CHECK(kiln_cpu_ops[op] != NULL, "%s has a cpu implementation (kiln_cpu_%s)", name, name);
        CHECK(cases[op] > 0, "%s has a case in the op harness (tests/cases-*.c)", name);
    }
    printf("%d ops, %d harness cases\n", KILN_OP_COUNT - 1, ncases);

    kiln_cases_free();
    kiln_backend_free(cpu);
    return check_done();
}
