FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY incidents ./incidents
COPY workers ./workers
COPY alembic ./alembic
COPY examples ./examples
RUN pip install --no-cache-dir -e .
ENV INCIDENTS_HOST=0.0.0.0
EXPOSE 8080
CMD ["incidents", "serve"]
