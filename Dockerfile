# Podium SFU. All media shares one UDP port, so a published port is enough:
#   docker run -p 7880:7880 -p 7882:7882/udp -e PODIUM_API_KEY=... -e PODIUM_API_SECRET=... \
#       podium --host 0.0.0.0 --announce-address <the host's address clients reach>
# Ports: 7880/tcp  HTTP + WebSocket signaling (/rtc), server API, /metrics, /healthz
#        7882/udp  ICE/DTLS/SRTP media of every participant (--udp-port)
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sfu ./sfu
COPY signaling ./signaling
RUN pip install --no-cache-dir .

EXPOSE 7880/tcp 7882/udp
USER nobody
ENTRYPOINT ["podium", "serve"]
CMD ["--host", "0.0.0.0", "--port", "7880"]
