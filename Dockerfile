# Podium SFU. All media shares one UDP port, so publishing it is enough:
#
#   docker build -t podium .
#   docker run -p 7880:7880 -p 7882:7882/udp \
#       -e PODIUM_API_KEY=prod -e PODIUM_API_SECRET="$(openssl rand -hex 32)" \
#       -e PODIUM_ANNOUNCE_ADDRESS=<the host's address clients reach> \
#       -v podium-recordings:/var/lib/podium/recordings podium
#
# Ports:   7880/tcp  HTTP + WebSocket signaling (/rtc), server API, /metrics, /healthz
#          7882/udp  ICE/DTLS/SRTP media of every participant (--udp-port)
#          9102/tcp  /metrics, /healthz, /readyz only (plain http: for Prometheus and
#                    the HEALTHCHECK; do not publish it to the world)
# Env:     PODIUM_ANNOUNCE_ADDRESS (required: the container's own address is useless
#          to clients), PODIUM_API_KEY, PODIUM_API_SECRET, and optionally
#          PODIUM_ICE_SERVERS, PODIUM_TURN_SECRET, PODIUM_LOG_FORMAT (docs/operations.md).
# Volume:  /var/lib/podium/recordings, where hosts' recordings are written (owned by
#          the unprivileged user `podium`, uid 10001: a bind mount must be writable by it).
FROM python:3.11-slim

WORKDIR /app

# Dependencies in their own layer, from pyproject.toml alone: editing the source does
# not reinstall aiortc, av and numpy.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

COPY README.md LICENSE ./
COPY sfu ./sfu
COPY signaling ./signaling
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --home-dir /var/lib/podium --create-home podium \
    && mkdir -p /var/lib/podium/recordings \
    && chown podium:podium /var/lib/podium/recordings

USER podium
ENV PODIUM_RECORDINGS_DIR=/var/lib/podium/recordings \
    PODIUM_METRICS_PORT=9102 \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/podium/recordings
EXPOSE 7880/tcp 7882/udp 9102/tcp

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=2)"]

ENTRYPOINT ["podium", "serve"]
CMD ["--host", "0.0.0.0", "--port", "7880", "--udp-port", "7882"]
