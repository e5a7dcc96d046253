/*
 * etcd_impl.h: what etcd.c, etcd_txn.c and etcd_json.c share and nobody
 * else sees: the operation kinds, the JSON encoders and decoders of the
 * gateway's conventions (base64 bytes, 64-bit numbers as strings, proto3's
 * omitted zero fields), the transaction builder's insides.
 */
#ifndef ETCD_IMPL_H
#define ETCD_IMPL_H

#include <jansson.h>

#include "etcd.h"

enum etcd_opkind {
	ETCD_OP_GRANT,
	ETCD_OP_KEEPALIVE,
	ETCD_OP_REVOKE,
	ETCD_OP_TTL,
	ETCD_OP_TXN,
	ETCD_OP_RANGE,
	ETCD_OP_DELRANGE,
	ETCD_OP_COMPACT,
	ETCD_OP_WATCH
};

struct etcd_txn {
	json_t	*cmp;
	json_t	*ops[2];	/* [1]: on success, [0]: on failure */
};

/* Send body (taken, also on failure) as an operation of kind: 0 and a
 * callback later, or a negative errno now and no callback. */
int	 etcd_op_start(struct etcd *, enum etcd_opkind, json_t *body,
	    etcd_cb *, void *);

/* Encoders: NULL when out of memory. */
json_t	*etcd_json_b64(const void *p, size_t n);
json_t	*etcd_json_int(int64_t v);
/* Set o[key] to the encoding (taken); 0 or -ENOMEM. */
int	 etcd_json_set(json_t *o, const char *key, json_t *v);

/*
 * Decoders of optional fields (absent is proto3's zero): 0, or -EPROTO
 * when the field has the wrong type or does not parse.
 */
int	 etcd_json_i64(const json_t *o, const char *key, int64_t *out);
int	 etcd_json_bool(const json_t *o, const char *key, bool *out);
/* The object at key, which must be one. */
int	 etcd_json_obj(const json_t *o, const char *key, json_t **out);
/* The kvs of array a (NULL: none): *kvs and *mem to free. */
int	 etcd_json_kvs(const json_t *a, struct etcd_kv **kvs, size_t *n,
	    uint8_t **mem);
/* One kv into kv, its bytes copied to *mem (advanced). */
int	 etcd_json_kv(const json_t *o, struct etcd_kv *kv, uint8_t **mem);
/* The decoded size bound of the bytes in o's key and value. */
size_t	 etcd_json_kv_size(const json_t *o);

#endif /* ETCD_IMPL_H */
