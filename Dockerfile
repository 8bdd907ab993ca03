# The maestro image the Kubernetes examples run (examples/k8s): one static,
# stripped binary for every subcommand, the two wasm filters where the Istio
# rendering expects them (/etc/maestro/wasm), and the demo models, on a
# distroless base that has CA certificates and nothing else (no shell).
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/maestro-ml/maestro:0.1.0 .
# .dockerignore keeps CA keys (.maestro/), the demo's state, binaries and
# build outputs out of the context.
FROM golang:1.26 AS build
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/maestro ./cmd/maestro \
 && GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o /out/wasm/fanout.wasm ./wasmfilter/fanout/cmd \
 && GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o /out/wasm/slo.wasm ./wasmfilter/slo/cmd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/maestro /maestro
COPY --from=build /out/wasm /etc/maestro/wasm
COPY examples/models /models
USER 65532:65532
ENTRYPOINT ["/maestro"]
