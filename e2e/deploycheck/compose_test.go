package deploycheck

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshllm/meshllm/e2e/vllmsim"
)

type composeFile struct {
	Name     string `json:"name"`
	Services map[string]struct {
		Image       string   `json:"image"`
		NetworkMode string   `json:"network_mode"`
		Command     []string `json:"command"`
		Volumes     []string `json:"volumes"`
		Build       *struct {
			Context    string `json:"context"`
			Dockerfile string `json:"dockerfile"`
			Target     string `json:"target"`
		} `json:"build"`
	} `json:"services"`
}

// flagValues collects "--flag value" / "--flag=value" pairs (a list flag
// keeps every value until the next flag, as vllm-sim's --lora-modules).
func flagValues(args []string) map[string][]string {
	out := map[string][]string{}
	cur := ""
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			k, v, ok := strings.Cut(a, "=")
			cur = k
			out[k] = nil
			if ok {
				out[k] = append(out[k], v)
			}
			continue
		}
		out[cur] = append(out[cur], a)
	}
	return out
}

// checkCompose ties docker-compose.yaml to envoy.yaml and the samples.
func checkCompose(raw []byte, wasmPath string, targetModels []string) error {
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return err
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	env, ok := c.Services["envoy"]
	if !ok {
		return errors.New("no envoy service")
	}
	tag := regexp.MustCompile(`^envoyproxy/envoy(?:-contrib)?:(?:distroless-)?v1\.(\d+)`).FindStringSubmatch(env.Image)
	minor := 0
	if tag != nil {
		minor, _ = strconv.Atoi(tag[1])
	}
	if minor < 35 {
		fail("envoy image %q: want envoyproxy/envoy >= v1.35", env.Image)
	}
	for _, want := range []string{"./envoy.yaml:/etc/envoy/envoy.yaml:ro", "../wasm/meshllm.wasm:" + wasmPath + ":ro"} {
		if !slices.Contains(env.Volumes, want) {
			fail("envoy volumes %v lack %s", env.Volumes, want)
		}
	}
	var simPorts []string
	for name, s := range c.Services {
		if s.NetworkMode != "host" {
			fail("service %s: network_mode %q, want host (envoy.yaml uses 127.0.0.1)", name, s.NetworkMode)
		}
		if s.Build != nil {
			if _, err := os.Stat("../../" + strings.TrimPrefix(s.Build.Dockerfile, "./")); err != nil || s.Build.Context != ".." {
				fail("service %s: build %+v", name, *s.Build)
			}
		}
		if !strings.HasPrefix(name, "vllm-") {
			continue
		}
		f := flagValues(s.Command)
		simPorts = append(simPorts, "127.0.0.1:"+f["--port"][0])
		for _, m := range f["--lora-modules"] {
			if _, err := vllmsim.ParseLoRAModule(m); err != nil {
				fail("service %s: %v", name, err)
			}
		}
		served := map[string]bool{f["--served-model-name"][0]: true}
		for _, m := range f["--lora-modules"] {
			n, _, _ := strings.Cut(m, "=")
			served[n] = true
		}
		for _, tm := range targetModels {
			if !served[tm] {
				fail("service %s does not serve %q, a target model of istio/inferencemodel.yaml", name, tm)
			}
		}
	}
	slices.Sort(simPorts)
	if !slices.Equal(simPorts, vllmEndpoints) {
		fail("simulated pods on %v, want envoy.yaml's endpoints %v", simPorts, vllmEndpoints)
	}
	p := flagValues(c.Services["picker"].Command)
	if got := strings.Split(strings.Join(p["--endpoints"], ","), ","); !slices.Equal(got, vllmEndpoints) {
		fail("picker --endpoints %v, want %v (override_host only honours cluster members)", got, vllmEndpoints)
	}
	if got := strings.Join(p["--listen"], ""); got != pickerAddr {
		fail("picker --listen %q, want envoy.yaml's picker cluster %s", got, pickerAddr)
	}
	for _, o := range strings.Split(strings.Join(p["--objects"], ","), ",") {
		mounted := false
		for _, v := range c.Services["picker"].Volumes {
			mounted = mounted || strings.Contains(v, ":"+o+":") && strings.HasPrefix(v, "../istio/")
		}
		if !mounted {
			fail("picker --objects %s is not mounted from istio/", o)
		}
	}
	return errors.Join(errs...)
}

// sampleTargetModels lists the target models the InferenceModel samples
// route to (names only; the picker's parser checks the objects).
func sampleTargetModels(t *testing.T) []string {
	docs, err := Docs(read(t, "istio/inferencemodel.yaml"))
	require.NoError(t, err)
	var out []string
	for _, d := range docs {
		var o struct {
			Spec struct {
				ModelName    string `json:"modelName"`
				TargetModels []struct {
					Name string `json:"name"`
				} `json:"targetModels"`
			} `json:"spec"`
		}
		require.NoError(t, yaml.Unmarshal(d, &o))
		if len(o.Spec.TargetModels) == 0 {
			out = append(out, o.Spec.ModelName) // passed through as named
		}
		for _, tm := range o.Spec.TargetModels {
			out = append(out, tm.Name)
		}
	}
	return out
}

func TestDockerCompose(t *testing.T) {
	src := string(read(t, "envoy/docker-compose.yaml"))
	models := sampleTargetModels(t)
	require.NoError(t, checkCompose([]byte(src), "/etc/envoy/meshllm.wasm", models))
	for _, tc := range []struct{ old, new, want string }{
		{`"--port", "8002"`, `"--port", "8003"`, "simulated pods"},
		{"--endpoints=127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002", "--endpoints=127.0.0.1:8000,127.0.0.1:8001", "--endpoints"},
		{"envoyproxy/envoy:v1.35-latest", "envoyproxy/envoy:v1.34-latest", ">= v1.35"},
		{"../wasm/meshllm.wasm:/etc/envoy/meshllm.wasm:ro", "../wasm/meshllm.wasm:/etc/envoy/filter.wasm:ro", "meshllm.wasm"},
		{`"sql-lora=/adapters/sql", "--seed", "2"`, `"--seed", "2"`, "sql-lora"},
		{"--listen=127.0.0.1:9002", "--listen=127.0.0.1:9003", "--listen"},
	} {
		require.ErrorContains(t, checkCompose(mutate(t, src, tc.old, tc.new), "/etc/envoy/meshllm.wasm", models), tc.want)
	}
}

// TestDockerfiles: the OCI recipe Istio pulls, and the service images the
// compose file and the Deployment name.
func TestDockerfiles(t *testing.T) {
	w := string(read(t, "wasm/Dockerfile"))
	require.Regexp(t, `(?m)^FROM scratch$`, w)
	require.Regexp(t, `(?m)^COPY meshllm\.wasm \./plugin\.wasm$`, w)
	mk := string(read(t, "Makefile"))
	require.Contains(t, mk, "WASM    := wasm/meshllm.wasm", "wasm/Dockerfile copies the module make wasm writes")

	d := string(read(t, "deploy/docker/Dockerfile"))
	gomod := string(read(t, "go.mod"))
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)[1]
	require.Contains(t, d, "FROM golang:"+goVer+" AS build")
	for _, target := range []string{"picker-svc", "vllm-sim"} {
		require.Regexp(t, `(?m)^FROM \S+ AS `+target+`$`, d)
	}
	for _, pkg := range []string{"./picker-svc", "./e2e/vllmsim/cmd/vllm-sim"} {
		require.Contains(t, d, "-o /out/"+pkg[strings.LastIndex(pkg, "/")+1:]+" "+pkg)
		_, err := os.Stat("../../" + pkg + "/main.go")
		require.NoError(t, err)
	}
	// picker-deployment runs as 65532: the distroless nonroot user.
	require.Contains(t, d, "distroless/static-debian12:nonroot AS picker-svc")
	require.Contains(t, string(read(t, "istio/picker-deployment.yaml")), "runAsUser: 65532")
}
