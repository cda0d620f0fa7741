# Podium SFU. Media uses one UDP port per peer connection, chosen by the OS
# (aioice has no port range yet), so run with host networking:
#   docker run --network host -e PODIUM_API_KEY=... -e PODIUM_API_SECRET=... podium
# Ports: 7880/tcp  HTTP + WebSocket signaling (/rtc) and /healthz
#        ephemeral UDP  ICE/DTLS/SRTP media, one per participant
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sfu ./sfu
COPY signaling ./signaling
RUN pip install --no-cache-dir .

EXPOSE 7880/tcp
USER nobody
ENTRYPOINT ["podium", "serve"]
CMD ["--host", "0.0.0.0", "--port", "7880"]
