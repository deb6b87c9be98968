// The `go-entries` policy component: build with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared, then make a component (examples/policies/build.sh).
package main

import (
	"ramrod.dev/policies/entries"
	"ramrod.dev/policies/policy"
)

func init() { policy.Register("go-entries", entries.Configure) }

func main() {}
