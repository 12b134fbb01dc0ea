terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  # Tags on every resource Terraform creates. Worker instances are launched by
  # the provisioner Lambda, not by Terraform; they carry Name/JobId/ManagedBy
  # tags set by the launcher instead.
  default_tags {
    tags = merge(
      {
        Project     = var.project_name
        Environment = var.environment
        Terraform   = "true"
      },
      var.tags,
    )
  }
}
