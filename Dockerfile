# The maestro image the Kubernetes examples run (examples/k8s): one static
# binary for every subcommand, the two wasm filters where the Istio
# rendering expects them (/etc/maestro/wasm), and the demo models.
#   docker build -t ghcr.io/maestro-ml/maestro:0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/maestro ./cmd/maestro \
 && GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o /out/wasm/fanout.wasm ./wasmfilter/fanout/cmd \
 && GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o /out/wasm/slo.wasm ./wasmfilter/slo/cmd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/maestro /maestro
COPY --from=build /out/wasm /etc/maestro/wasm
COPY examples/models /models
USER 65532:65532
ENTRYPOINT ["/maestro"]
