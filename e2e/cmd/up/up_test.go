package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// TestUpServesUntilStopped runs the command as a user would, on free
// ports: it reads the URLs and the first request from what the command
// prints, sends that request to the LLM-aware listener and one through the
// ext_proc gateway, checks that the picker chose the pod that served it
// (the access log, the gateway's and the picker's counters, the pod's own
// token counter), then stops the command and checks that every port is
// closed.
func TestUpServesUntilStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		free := "127.0.0.1:0"
		runErr = run(ctx, []string{"--round-robin-addr", free, "--llm-addr", free, "--admin-addr", free, "--picker-addr", free,
			"--ext-proc", "--ext-proc-addr", free, "--speed", "20", "--picker-timeout-ms", "10000", "--pods", "2"}, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() { cancel(); <-stopped })

	urls := map[string]string{}
	var curl string
	row := regexp.MustCompile(`^  (\S.*?)\s+(http://\S+)\s`)
	for {
		l := line(t, lines)
		if m := row.FindStringSubmatch(l); m != nil {
			urls[m[1]] = m[2]
		}
		if strings.HasPrefix(l, "  curl ") {
			curl = l
		}
		if l == "Ctrl-C stops everything." {
			break
		}
	}
	for _, k := range []string{"round robin", "LLM-aware", "ext_proc gateway", "gateway stats", "picker-svc", "vLLM pod 0", "vLLM pod 1"} {
		require.Contains(t, urls, k, "printed URLs: %v", urls)
	}

	// The printed first request, as curl would send it.
	m := regexp.MustCompile(`^  curl -s (\S+) -H 'Content-Type: application/json' -d '(.*)'$`).FindStringSubmatch(curl)
	require.NotNil(t, m, "curl line: %q", curl)
	require.True(t, strings.HasPrefix(m[1], urls["LLM-aware"]+"/"), m[1])
	usage := post(t, m[1], m[2])

	// The access log: the picker's choice is the pod that served.
	access := next(t, lines, "listener=8081")
	endpoint := field(t, access, "endpoint")
	require.Equal(t, "picked", field(t, access, "route"), access)
	require.Equal(t, endpoint, field(t, access, "upstream"), access)
	require.Equal(t, "200", field(t, access, "status"), access)

	gw := scrape(t, urls["gateway stats"])
	require.Equal(t, 1.0, value(gw, "asm_llm_proxy_picks_total", map[string]string{"outcome": "picked"}))
	picker := scrape(t, urls["picker-svc"])
	require.Equal(t, 1.0, value(picker, "meshllm_picker_picks_total", map[string]string{"outcome": "picked", "strategy": "PREFIX_CACHE"}))
	served := 0
	for _, pod := range []string{"vLLM pod 0", "vLLM pod 1"} {
		u, err := url.Parse(urls[pod])
		require.NoError(t, err)
		tokens := value(scrape(t, urls[pod]), "vllm:prompt_tokens_total", nil)
		if u.Host == endpoint {
			served++
			require.Equal(t, usage.PromptTokens, tokens, "the picked pod counted the request's prompt")
		} else {
			require.Zero(t, tokens, "%s served nothing", pod)
		}
	}
	require.Equal(t, 1, served, "the picked endpoint %s is one of the printed pods", endpoint)

	// The gateway path: the picker places the request over ext_proc and
	// counts its tokens under the filter's series names.
	ext := post(t, urls["ext_proc gateway"]+"/v1/completions", m[2])
	picker = scrape(t, urls["picker-svc"])
	require.Equal(t, 2.0, value(picker, "meshllm_picker_picks_total", map[string]string{"outcome": "picked", "strategy": "PREFIX_CACHE"}))
	require.Equal(t, ext.PromptTokens, value(picker, "asm_llm_proxy_prompt_tokens", map[string]string{"model": "tweet-summary"}))

	cancel()
	<-stopped
	require.NoError(t, runErr)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	require.Contains(t, rest, "meshllm up: stopped")
	for name, u := range urls {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		c, err := net.Dial("tcp", pu.Host)
		if err == nil {
			c.Close()
		}
		require.Error(t, err, "%s (%s) still accepts connections after the stop", name, pu.Host)
	}
}

// line returns the next printed line, failing the test if none comes
// within a bound generous for a loaded machine (the stack compiles the
// filter first).
func line(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		require.True(t, ok, "output ended")
		return l
	case <-time.After(2 * time.Minute):
		t.Fatal("nothing printed for 2 minutes")
	}
	return ""
}

// next returns the next printed line that contains want.
func next(t *testing.T, lines <-chan string, want string) string {
	t.Helper()
	for {
		if l := line(t, lines); strings.Contains(l, want) {
			return l
		}
	}
}

// field is key=value from an access-log line.
func field(t *testing.T, line, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?:^| )` + key + `=(\S+)`).FindStringSubmatch(line)
	require.NotNil(t, m, "no %s= in %q", key, line)
	return m[1]
}

type usageOf struct{ PromptTokens, CompletionTokens float64 }

// post sends a completion and returns its usage, requiring a 200 with text.
func post(t *testing.T, u, body string) usageOf {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
	var out struct {
		Choices []struct{ Text string } `json:"choices"`
		Usage   struct {
			PromptTokens     float64 `json:"prompt_tokens"`
			CompletionTokens float64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	require.Len(t, out.Choices, 1)
	require.NotEmpty(t, out.Choices[0].Text)
	require.Equal(t, 32.0, out.Usage.CompletionTokens, "max_tokens of the printed request")
	return usageOf{out.Usage.PromptTokens, out.Usage.CompletionTokens}
}

// scrape parses a Prometheus text page.
func scrape(t *testing.T, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(raw))
	require.NoError(t, err, "%s", raw)
	return fams
}

// value sums the counter or gauge series of name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum
}
