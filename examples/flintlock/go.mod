module ramrod.dev/flintlock

go 1.24
