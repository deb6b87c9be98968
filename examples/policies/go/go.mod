module ramrod.dev/policies

go 1.24
