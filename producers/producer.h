/* The producer library as the programs of this repository use it: the public interface
 * (producers/include/raikoo/producer.h, what `make install` installs) plus a constructor that reads a conf_t.
 * Only libraikoo.a has raikoo_producer_new_conf; libraikoo-producer.a, the library for upstream apps, has
 * the public interface alone. */
#ifndef RAIKOO_PRODUCER_INTERNAL_H
#define RAIKOO_PRODUCER_INTERNAL_H

#include "include/raikoo/producer.h"

#include "conf.h"

/* raikoo_producer_new with the settings of c (borrowed; every kafka.* setting, topic.commands,
 * topic.results and command.max.bytes are read now, so c may be freed afterwards). */
raikoo_producer_t *raikoo_producer_new_conf(const conf_t *c, char *errstr, size_t errstr_size);

#endif
