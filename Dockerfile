# The vigil image: one static binary on distroless, running as non-root.
# `make docker-build IMG=...` builds it; the Deployment in config/manager and the
# Helm chart run `vigil controller` from it. See docs/install.md.

# Build stage: a static binary (no cgo), with no local paths baked in.
FROM golang:1.26 AS builder
WORKDIR /src
# Dependencies first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY apis/ apis/
COPY cmd/ cmd/
# config/ is embedded into the binary (the CRDs and kwok stages for `vigil dev`).
COPY config/ config/
COPY controllers/ controllers/
COPY internal/ internal/
# Set by `docker buildx build --platform ...`; empty means the builder's platform.
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags='-s -w' -o /out/vigil ./cmd/vigil

# Run stage: no shell, no package manager, only CA certificates and tzdata.
FROM gcr.io/distroless/static:nonroot
COPY --from=builder /out/vigil /vigil
# distroless's nonroot user; the Deployment's securityContext says the same.
USER 65532:65532
ENTRYPOINT ["/vigil"]
CMD ["controller"]
