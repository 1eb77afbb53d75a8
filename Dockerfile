# Multi-stage build: a static binary (no cgo: SQLite is pure Go) on a
# distroless base, running as a non-root user, data in a volume.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hookrelay ./cmd/hookrelay \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hookrelay /usr/local/bin/hookrelay
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV HOOKRELAY_DATA_DIR=/data \
    HOOKRELAY_LISTEN=:8080
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hookrelay"]
CMD ["server"]
