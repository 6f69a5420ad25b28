/* Everything a family module needs from the core. */
#ifndef FL_H
#define FL_H
#include "arena.h"
#include "req.h"
#include "resp.h"
#include "route.h"
#include "json.h"
#include "db.h"
#include "auth.h"
#include "crypto.h"
#include "log.h"
#include "env.h"
#include "mime.h"
#include "net.h"
#include "serve.h"
#endif
