/* Numbers from the environment (settings read at start). */
#ifndef FL_ENV_H
#define FL_ENV_H

/* The variable name as a whole decimal number within lo..hi; def when it is unset or empty.
 * Anything else (not a number, trailing text, out of range) is def too, with a warning in the
 * log that names the variable, its value and the range: a typo never turns a limit off. */
long env_long(const char *name, long def, long lo, long hi);

#endif
