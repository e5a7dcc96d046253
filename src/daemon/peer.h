/*
 * peer.h: how the calls and the subscriptions reach a client without
 * knowing what it is.  A peer is an opaque pointer (the daemon's struct
 * conn); the owner of those modules supplies the hooks, the unit tests
 * their own.
 */
#ifndef PEER_H
#define PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn_shared;

struct peer_ops {
	/*
	 * Queue bytes for the peer.  With bounded, refuse (PR_ERR_BUSY,
	 * nothing queued) when its output is full.  0, PR_ERR_BUSY, or
	 * -ENOMEM (the peer is then closed at the end of the loop turn).
	 */
	int	(*write)(void *arg, void *peer, const void *p, size_t len,
		    bool bounded);
	/* The same for head (copied), then the shared bytes (referenced). */
	int	(*write_shared)(void *arg, void *peer, const void *head,
		    size_t hlen, struct conn_shared *, bool bounded);
	/* No memory for what the peer is owed: it is told and closed. */
	void	(*out_of_memory)(void *arg, void *peer);
};

/* The hash of a peer pointer, for the modules' per-peer indexes. */
static inline uint64_t
peer_hash(const void *peer)
{
	uint64_t x = (uint64_t)(uintptr_t)peer;

	/* splitmix64 finaliser: pointers share their low and high bits. */
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#endif /* PEER_H */
