# Versity S3 Gateway (versitygw), the S3-compatible object storage of the compose
# file, built from the Go module proxy at the version scripts/services/storage.sh
# pins. Build from the repository root (compose does):
#   docker build -f docker/storage.Dockerfile -t plop-storage .
FROM golang:1.26-alpine AS build
ARG VERSITYGW_VERSION=1.8.0
RUN CGO_ENABLED=0 GOBIN=/out go install "github.com/versity/versitygw/cmd/versitygw@v${VERSITYGW_VERSION}"

FROM alpine:3.20
COPY --from=build /out/versitygw /usr/local/bin/versitygw
RUN adduser -S -D -H -u 10002 storage && mkdir -p /data/objects /data/meta \
    && chown -R storage /data
USER storage
EXPOSE 7070
# The root keys come from ROOT_ACCESS_KEY and ROOT_SECRET_KEY in the environment.
CMD ["versitygw", "--port", ":7070", "posix", "--sidecar", "/data/meta", "/data/objects"]
