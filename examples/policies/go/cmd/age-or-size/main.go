// The `go-age-or-size` policy component (see package ageorsize).
package main

import (
	"ramrod.dev/policies/ageorsize"
	"ramrod.dev/policies/policy"
)

func init() { policy.Register("go-age-or-size", ageorsize.Configure) }

func main() {}
