// Package replicas lets several picker-svc replicas route as one picker.
//
// Each replica scrapes the engines itself: what the pods say (queues, KV
// cache, first-token counts) every replica reads first-hand. What only a
// picker knows is shared: each pick (its id, endpoint, prompt size, the
// prefix guess it taught the prefix index) and each request end reported
// to a replica reach every peer within a bounded lag (at most the flush
// interval plus the network), and a peer replays them through the same scheduling
// hooks as its own picks (scheduling.ApplyPeerPick). A request end counts
// wherever the filter reports it: every replica holds every pick, so ends
// are sent to every peer too.
//
// Membership and transport are hashicorp/memberlist (SWIM failure
// detection, UDP for small messages, TCP for large ones, optional AES-GCM
// encryption). Picks and ends are batched per flush interval into
// msgpack-encoded messages sent straight to each live member; a replica
// that joins (or rejoins after a network split) gets its peers' prefix
// index and picks in flight in memberlist's push-pull exchange before it
// reports ready.
//
// Memory and bandwidth are bounded: the outgoing queue holds at most
// Config.MaxQueueBytes (the oldest picks are dropped and counted), a
// message at most Config.MaxMessageBytes, and the warm-up state at most
// Config.StateBlocks prefix blocks.
package replicas
