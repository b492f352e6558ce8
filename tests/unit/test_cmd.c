/* Unit tests of command parsing (filled in with the command pipeline). */
#include "unit.h"

const unit_test_t cmd_tests[] = {{NULL, NULL}};
