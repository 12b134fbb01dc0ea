package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// CreateTable creates the jobs table with its three indexes, as
// deploy/aws/terraform/storage.tf does, and waits until it is active. It is
// for tests and local use; an existing table is not an error. TTL on
// expires_at is left to the infrastructure (UpdateTimeToLive), which the
// local emulator does not implement.
func CreateTable(ctx context.Context, client *dynamodb.Client, name string) error {
	str := func(n string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(n), AttributeType: types.ScalarAttributeTypeS}
	}
	keyOf := func(hash, rng string) []types.KeySchemaElement {
		ks := []types.KeySchemaElement{{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash}}
		if rng != "" {
			ks = append(ks, types.KeySchemaElement{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange})
		}
		return ks
	}
	all := &types.Projection{ProjectionType: types.ProjectionTypeAll}
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			str(attrJobID), str(attrOwner), str(attrCreatedAt), str(attrActive), str(attrIdempotency),
		},
		KeySchema: keyOf(attrJobID, ""),
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{
			{IndexName: aws.String(IndexOwnerCreated), KeySchema: keyOf(attrOwner, attrCreatedAt), Projection: all},
			{IndexName: aws.String(IndexActive), KeySchema: keyOf(attrActive, attrCreatedAt), Projection: all},
			{IndexName: aws.String(IndexIdempotency), KeySchema: keyOf(attrIdempotency, ""), Projection: all},
		},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create DynamoDB table %s: %w", name, err)
	}
	// The default waiter sleeps 20 s before its second look; a table is
	// usually active within a second.
	w := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 5*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 2*time.Minute); err != nil {
		return fmt.Errorf("wait for DynamoDB table %s: %w", name, err)
	}
	return nil
}
