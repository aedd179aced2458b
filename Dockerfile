# newsletter daemon: watches /data/digests, writes /data/public, keeps state in /data/state.
#   docker build -t newsletter .
#   docker run -d --name newsletter -e NEWSLETTER_SECRET=... \
#     -v $PWD/digests:/data/digests -v newsletter-state:/data/state \
#     -v $PWD/public:/data/public -v $PWD/config.yaml:/data/config.yaml:ro newsletter
FROM python:3.11-slim
RUN useradd --create-home --uid 1000 newsletter
WORKDIR /app
COPY pyproject.toml README.md ./
COPY newsletter ./newsletter
COPY templates ./templates
RUN pip install --no-cache-dir . && mkdir -p /data && chown newsletter /data
USER newsletter
WORKDIR /data
VOLUME ["/data/digests", "/data/public", "/data/state", "/data/outbox"]
ENV NEWSLETTER_CONFIG=/data/config.yaml PYTHONUNBUFFERED=1
STOPSIGNAL SIGTERM
CMD ["newsletter", "run", "--log-format", "json"]
