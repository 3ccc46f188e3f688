"""The generated `guardrail.v1` stubs (`make proto`), one copy for the client and the server.

They live inside `guardrail_client`, never as a top-level `guardrail` package: an application with its own
`guardrail/` folder would shadow that (issue 23). protoc sees `proto/` as `guardrail_client/_proto/`, so the stubs
import each other by this path; the wire contract (package `guardrail.v1`, its services and messages) is unchanged.
"""
