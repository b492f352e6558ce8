/* Text files compiled into the binaries (see ops/embed): the SQL migrations and the mail templates. */
#ifndef RAIKOO_EMBEDDED_H
#define RAIKOO_EMBEDDED_H

typedef struct embedded_file {
    const char *name;
    const char *text;
} embedded_file_t;

/* The files of schemas/sql, in order, ending with a NULL name. */
extern const embedded_file_t embedded_sql[];
/* The files of lib/templates, ending with a NULL name. */
extern const embedded_file_t embedded_templates[];

#endif
