"""The Airflow side of kubequeue: the only code that imports Airflow."""
