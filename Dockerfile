FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN make setup && ln -s /app/.venv/bin/agora /usr/local/bin/agora
EXPOSE 8000
CMD ["agora", "serve", "--host", "0.0.0.0"]
