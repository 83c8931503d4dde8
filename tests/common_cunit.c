/*
 * NAME
 *	common_cunit.c - the CUnit runner of the C tests
 *
 * DESCRIPTION
 *	See common.h: tc_run registers tables of named cases as suites and
 *	runs them.  It keeps the temporary directory when anything failed,
 *	so that the store a failing case left can be read.
 */
#include <stdio.h>

#include <CUnit/Basic.h>

#include "common.h"

/* tc_current_suite - the running suite's name. */
const char *
tc_current_suite(void)
{
	CU_pSuite s = CU_get_current_suite();

	return s != NULL && s->pName != NULL ? s->pName : "";
}

/* tc_run - the one CUnit main of every test program. */
int
tc_run(const struct tc_suite *suites, size_t nsuites)
{
	unsigned failures;
	int cu_error;

	setvbuf(stdout, NULL, _IONBF, 0);	/* children print too */
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	for (size_t i = 0; i < nsuites; i++) {
		CU_pSuite s = CU_add_suite(suites[i].name, suites[i].init,
		    suites[i].clean);

		if (s == NULL)
			goto fail;
		for (size_t j = 0; j < suites[i].ncases; j++)
			if (CU_add_test(s, suites[i].cases[j].name,
			    suites[i].cases[j].fn) == NULL)
				goto fail;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	/* a suite whose init failed runs nothing and asserts nothing */
	failures = CU_get_number_of_failures() +
	    CU_get_number_of_tests_failed() +
	    CU_get_number_of_suites_failed();
	cu_error = CU_get_error() != CUE_SUCCESS;
	CU_cleanup_registry();
	if (failures == 0 && !cu_error)
		tc_tmpdir_remove();
	else if (tc_dir[0] != '\0')
		fprintf(stderr, "kept %s for a post-mortem\n", tc_dir);
	return failures > 0 || cu_error ? 1 : 0;
fail:
	fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 2;
}
