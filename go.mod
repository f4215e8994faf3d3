module github.com/fleetd/fleetd

go 1.26.8

require (
	github.com/expr-lang/expr v1.17.8 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
