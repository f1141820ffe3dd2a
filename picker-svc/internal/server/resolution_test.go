package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
)

// A pick names its pool's resolution table by version; GET /v1/resolution
// serves the table; a change of the objects changes the version, a change
// of endpoints does not.
func TestResolutionTableAndVersion(t *testing.T) {
	f := newFixture(t)
	v := newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)

	pickVersion := func(body string) string {
		status, b := f.post(t, body)
		require.Equal(t, http.StatusOK, status, string(b))
		resp, err := pickapi.ParsePickResponse(b)
		require.NoError(t, err)
		return resp.Resolution
	}
	table := func(query string) (int, pickapi.Resolution) {
		code, body := f.get(t, pickapi.ResolutionPath+query)
		if code != http.StatusOK {
			return code, pickapi.Resolution{}
		}
		r, err := pickapi.ParseResolution([]byte(body))
		require.NoError(t, err, body)
		return code, r
	}

	version := pickVersion(`{"model":"chat","pool":"sim-pool"}`)
	require.True(t, pickapi.ValidVersion(version), version)
	require.Equal(t, version, pickVersion(`{"model":"","pool":"sim-pool"}`), "pool-level picks carry it too")
	code, r := table("?pool=sim-pool")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, version, r.Version)
	require.Equal(t, "sim-pool", r.Pool)
	require.Equal(t, []pickapi.Target{{Name: "chat-lora-stable", Weight: 90}, {Name: "chat-lora-canary", Weight: 10}}, r.Models["chat"])

	// Without a pool: the table of a filter that names none.
	noPool := pickVersion(`{"model":"chat"}`)
	code, r = table("")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, noPool, r.Version)
	require.Equal(t, "", r.Pool)

	f.store.SetEndpoints("sim-pool", []string{v.addr(), "127.0.0.1:1"})
	require.Equal(t, version, pickVersion(`{"model":"chat","pool":"sim-pool"}`), "endpoints are not in the table")
	f.store.SetModel(inference.Model{Name: "chat", ModelName: "chat", PoolName: "sim-pool",
		Targets: []inference.Target{{Name: "chat-lora-stable", Weight: 50}, {Name: "chat-lora-canary", Weight: 50}}})
	changed := pickVersion(`{"model":"chat","pool":"sim-pool"}`)
	require.NotEqual(t, version, changed)
	_, r = table("?pool=sim-pool")
	require.Equal(t, changed, r.Version)
	require.Equal(t, int32(50), r.Models["chat"][1].Weight)

	code, _ = table("?pool=nope")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = table("?pool=" + strings.Repeat("p", pickapi.MaxNameLen+1))
	require.Equal(t, http.StatusBadRequest, code)
	resp, err := http.Post(f.http.URL+pickapi.ResolutionPath, "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
