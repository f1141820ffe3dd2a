package fleet

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// The derivation by hand: 24 GiB x 0.95 = 24,481,313,587 B; minus 15 GiB
// of weights and 1 GiB of activations = 7,301,444,403 B of KV.
// Qwen2.5-7B: / (57,344 x 16 = 917,504 B a block) = 7,957.9 -> 7,957.
// Llama-2-7B: / (524,288 x 16 = 8,388,608 B) = 870.4 -> 870.
func TestPresetBlocks(t *testing.T) {
	require.Equal(t, int64(7_301_444_403), Presets["qwen2.5-7b-a10"].KVBytes())
	require.Equal(t, 7957, Presets["qwen2.5-7b-a10"].NumGPUBlocks())
	require.Equal(t, 870, Presets["llama-2-7b-a10"].NumGPUBlocks())
	require.Equal(t, 6144, Presets["vllmsim-98k"].NumGPUBlocks(), "vllmsim's default KV size")
	require.Equal(t, vllmsim.DefaultStepModel(), Presets["vllmsim-98k"].Step(), "vllmsim's default step model")
	require.Contains(t, Presets["vllmsim-98k"].Describe(), "6144 blocks (98304 tokens)")
	for _, name := range PresetNames() {
		p := Presets[name]
		require.GreaterOrEqual(t, p.NumGPUBlocks()*BlockSize, MaxModelLen, "%s must hold one max_model_len request", name)
		require.Len(t, p.Sims(10, nil), 5)
	}
}
