package kvevents

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// End to end against the simulated vLLM server (e2e/vllmsim) run as its
// own process, as a real engine would be: its KV events over ZeroMQ on
// loopback, its /tokenize for the token ids. (The product does not import
// the e2e harness, so the test builds and runs the vllm-sim command.)

func buildSim(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "vllm-sim")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/meshllm/meshllm/e2e/vllmsim/cmd/vllm-sim").CombinedOutput()
	require.NoError(t, err, "building vllm-sim: %s", out)
	return bin
}

type simProc struct {
	cmd                 *exec.Cmd
	url, events, replay string
	done                chan struct{}
}

var (
	reAddr   = regexp.MustCompile(`msg="vllm-sim listening".* addr=(\S+)`)
	reEvents = regexp.MustCompile(`msg="vllm-sim kv events".* endpoint=(\S+) replay=(\S+)`)
)

// startSim runs vllm-sim and reads its addresses from its log.
func startSim(t *testing.T, bin string, port int, events, replay string) *simProc {
	t.Helper()
	cfg := fmt.Sprintf(`{"enable_kv_cache_events":true,"endpoint":%q,"replay_endpoint":%q,"topic":"kv@sim@m"}`, events, replay)
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--model", "m", "--speed", "100",
		"--num-gpu-blocks", "70", "--max-model-len", "1024", "--kv-events-config", cfg)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &simProc{cmd: cmd, done: make(chan struct{})}
	found := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := reAddr.FindStringSubmatch(sc.Text()); m != nil {
				p.url = "http://" + m[1]
			}
			if m := reEvents.FindStringSubmatch(sc.Text()); m != nil {
				p.events, p.replay = m[1], m[2]
				close(found)
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(p.stop)
	select {
	case <-found:
	case <-p.done:
		t.Fatal("vllm-sim exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("vllm-sim did not start")
	}
	return p
}

func (p *simProc) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

func (p *simProc) post(t *testing.T, path, body string) []byte {
	t.Helper()
	resp, err := http.Post(p.url+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, "%s: %s", path, b)
	return b
}

func (p *simProc) tokenize(t *testing.T, prompt string) []uint32 {
	var r struct {
		Tokens []uint32 `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal(p.post(t, "/tokenize", fmt.Sprintf(`{"prompt":%q}`, prompt)), &r))
	return r.Tokens
}

func (p *simProc) complete(t *testing.T, prompt string) {
	p.post(t, "/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":1}`, prompt))
}

func words(tag string, tokens int) string {
	var sb strings.Builder
	for sb.Len() < 4*tokens {
		fmt.Fprintf(&sb, "%s%07d ", tag, sb.Len())
	}
	return sb.String()[:4*tokens]
}

// until handles traced messages until cond holds, or fails at the deadline.
func (r *rig) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(deadline)
	for !cond() {
		select {
		case <-r.trace:
		case <-timeout:
			t.Fatalf("not within the deadline: %s", what)
		}
	}
}

func TestVLLMSimEndToEnd(t *testing.T) {
	bin := buildSim(t)
	sim := startSim(t, bin, 0, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
	r := newRig(t, Config{})
	src := Source{Pod: "sim", Endpoint: sim.events, Replay: sim.replay, Topic: "kv@"}
	ctx, cancel := context.WithCancel(context.Background())
	subDone := make(chan struct{})
	go func() { defer close(subDone); Subscribe(ctx, src, r.cfg) }()
	t.Cleanup(func() { cancel(); <-subDone })
	held := func(toks []uint32) PodScore { return r.ix.Score(toks, "", []string{"sim"}, nil)[0] }

	// ZeroMQ drops what is published before the subscription lands: send
	// requests until a message comes through (replay from 0 brings the rest).
	for i := 0; r.ix.Stats().Pods == 0; i++ {
		require.Less(t, i, 20, "no event ever arrived")
		sim.complete(t, words(fmt.Sprint("warm", i), 16))
		select {
		case <-r.trace:
		case <-time.After(time.Second):
		}
	}
	r.until(t, "warm-up blocks held", func() bool { return r.ix.Ready("sim") })
	sim.post(t, "/reset_prefix_cache", "")
	r.until(t, "warm-up cleared", func() bool { return r.ix.Stats().Blocks == 0 })

	// Stored blocks, scored from /tokenize's ids.
	a := words("a", 64)
	sim.complete(t, a)
	tokA := sim.tokenize(t, a)
	r.until(t, "A's 4 blocks held", func() bool { return held(tokA) == PodScore{4, true} })

	// Eviction: two long prompts need the blocks A left cached; the cache
	// evicts A's, then B's last blocks (a request's tail goes first).
	b, c := words("b", 1000), words("c", 1000)
	sim.complete(t, b)
	sim.complete(t, c)
	tokB, tokC := sim.tokenize(t, b), sim.tokenize(t, c)
	r.until(t, "C's 62 blocks held", func() bool { return held(tokC).Blocks == 62 })
	assert.Equal(t, PodScore{0, true}, held(tokA), "A evicted")
	hb := held(tokB).Blocks
	assert.True(t, hb > 0 && hb < 62, "B keeps its leading blocks only: %d", hb)
	assert.Equal(t, r.ix.Stats().Blocks, 62+hb, "the index holds exactly what the cache does")

	// Reset.
	sim.post(t, "/reset_prefix_cache", "")
	r.until(t, "cleared", func() bool { return r.ix.Stats().Blocks == 0 })
	assert.Equal(t, PodScore{0, true}, held(tokC))

	// A lost batch, refilled by replay.
	sim.post(t, "/sim/kv-events/drop", `{"batches":1}`)
	d, e := words("d", 64), words("e", 64)
	sim.complete(t, d)
	sim.complete(t, e)
	tokD, tokE := sim.tokenize(t, d), sim.tokenize(t, e)
	r.until(t, "E held", func() bool { return held(tokE).Blocks == 4 })
	assert.Equal(t, PodScore{4, true}, held(tokD), "D's batch came by replay")
	assert.Equal(t, 1.0, testutil.ToFloat64(r.m.gaps.WithLabelValues(gapReplayed)))

	// A restarted engine: same addresses, sequence from 0, empty cache.
	port := strings.TrimPrefix(sim.url, "http://127.0.0.1:")
	evPort := sim.events[strings.LastIndexByte(sim.events, ':')+1:]
	rpPort := sim.replay[strings.LastIndexByte(sim.replay, ':')+1:]
	sim.stop()
	var httpPort int
	_, err := fmt.Sscan(port, &httpPort)
	require.NoError(t, err)
	sim2 := startSim(t, bin, httpPort, "tcp://*:"+evPort, "tcp://*:"+rpPort)
	f := words("f", 64)
	tokF := sim2.tokenize(t, f)
	for i := 0; held(tokF).Blocks != 4; i++ {
		require.Less(t, i, 20, "the restarted engine's events never arrived")
		sim2.complete(t, words(fmt.Sprint("f", i), 64)) // others until the subscriber has redialled
		sim2.complete(t, f)
		select {
		case <-r.trace:
		case <-time.After(time.Second):
		}
	}
	assert.Equal(t, PodScore{0, true}, held(tokE), "the old engine's blocks are gone")
}
