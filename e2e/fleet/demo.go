package fleet

import (
	"fmt"
	"log/slog"

	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// The demo fleet (`make demo`, and `make up`'s default): Llama-2-7B pods
// that each hold two of four LoRA adapters at a time, serving one pool with
// two virtual models split over the adapters by InferenceModel weights (a
// 50/50 split and a critical 90/10 canary) and the base model.
const (
	DemoPool      = "vllm-llama2-7b-pool" // envoy/envoy.yaml's pool
	DemoBaseModel = "meta-llama/Llama-2-7b-hf"
	DemoPods      = 3
)

// DemoAdapters are the LoRA adapters every demo pod can load.
var DemoAdapters = []string{"tweet-summary-1", "tweet-summary-2", "sql-lora-1", "sql-lora-2"}

// DemoObjects is the demo pool and its InferenceModels, the pool annotated
// with strategy (pickapi.StrategyDefault or StrategyPrefixCache).
func DemoObjects(strategy string) string {
	return fmt.Sprintf(demoObjects, DemoPool, strategy, DemoPool, DemoPool, DemoPool, DemoBaseModel, DemoPool)
}

const demoObjects = `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: %s
  annotations:
    inference.networking.x-k8s.io/routing-strategy: %s
spec:
  targetPortNumber: 8000
  selector: {app: %s}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: tweet-summary}
spec:
  modelName: tweet-summary
  criticality: Standard
  poolRef: {name: %s}
  targetModels:
  - {name: tweet-summary-1, weight: 50}
  - {name: tweet-summary-2, weight: 50}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: sql-lora}
spec:
  modelName: sql-lora
  criticality: Critical
  poolRef: {name: %s}
  targetModels:
  - {name: sql-lora-1, weight: 90}
  - {name: sql-lora-2, weight: 10}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: llama2-base}
spec:
  modelName: %s
  criticality: Standard
  poolRef: {name: %s}
`

// DemoSims are pods demo pods at the given speed factor.
func DemoSims(pods int, speed float64, logger *slog.Logger) []vllmsim.Config {
	var cfgs []vllmsim.Config
	for i := 0; i < pods; i++ {
		c := vllmsim.Config{Model: DemoBaseModel, Speed: speed, MaxLoRAs: 2, MaxNumSeqs: 16, NumGPUBlocks: 1200, Logger: logger}
		for _, a := range DemoAdapters {
			c.LoRAModules = append(c.LoRAModules, vllmsim.LoRAModule{Name: a, Path: "/adapters/" + a})
		}
		cfgs = append(cfgs, c)
	}
	return cfgs
}

// PoolObjects is a pool of the given name and strategy with no
// InferenceModel: the picker serves the pods' own model names (the A10
// presets).
func PoolObjects(pool, strategy string) string {
	return fmt.Sprintf(`apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: %s
  annotations:
    inference.networking.x-k8s.io/routing-strategy: %s
spec:
  targetPortNumber: 8000
  selector: {app: vllm}
`, pool, strategy)
}
