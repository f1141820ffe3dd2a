// Command filter is meshllm's Envoy HTTP filter, compiled with standard Go to
// a wasip1 reactor (wasm/meshllm.wasm). main stays empty: the host calls the
// exported proxy_on_* functions after init has registered the VM context.
package main

import "github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}
