/* Unit tests of mail rendering (filled in with the mailer). */
#include "unit.h"

const unit_test_t mail_tests[] = {{NULL, NULL}};
