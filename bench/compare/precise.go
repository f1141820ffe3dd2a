package compare

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/meshllm/meshllm/pickapi"
)

// ExtProcListener names the gateway path (an InferencePool whose endpoint
// picker is picker-svc, over ext_proc) as a policy's listener: the path
// where the picker has the request body, which precise routing tokenizes.
const ExtProcListener = "ext_proc"

// preciseKVEvents turns on the simulators' KV-cache events for the
// PRECISE_PREFIX_CACHE policy: each engine dials the picker's KV-event
// socket (bound by the picker, as llm-d gathers events) with llm-d's topic
// naming its address, so each needs a fixed address. It returns the
// picker's extra flags.
func preciseKVEvents(p Policy, sims []vllmsim.Config) ([]string, error) {
	if p.Strategy != string(pickapi.StrategyPrecisePrefixCache) {
		return nil, nil
	}
	ports, err := freePorts(len(sims) + 1)
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("tcp://127.0.0.1:%d", ports[0])
	for i := range sims {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i+1]))
		sims[i].Addr = addr
		sims[i].KVEvents = vllmsim.KVEventsConfig{EnableKVCacheEvents: true, Publisher: "zmq", Endpoint: listen,
			Topic: "kv@" + addr + "@" + sims[i].Model}
	}
	return []string{"--kv-events-listen", listen}, nil
}

// freePorts finds n free loopback ports (held together while found, so
// they differ; another process could take one before it is bound again).
func freePorts(n int) ([]int, error) {
	out := make([]int, n)
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

// waitSubscribed waits until every engine has reached the picker's
// KV-event socket, so that no event of the run is published to no one
// (a picker that misses an engine's first events scores it by the guess
// until it has caught up).
func waitSubscribed(ctx context.Context, fleet *vllmsim.Fleet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, srv := range fleet.Servers {
		for !srv.KVEventsSubscribed() {
			if time.Now().After(deadline) {
				return fmt.Errorf("engine %s did not reach the picker's KV-event socket within %v", srv.Addr(), limit)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond): // polling a condition
			}
		}
	}
	return nil
}
