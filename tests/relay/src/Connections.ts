// Every connection field of schema.graphql under `@connection`, for relay-compiler
// (tests/relay/run.sh compiles these and checks that each connection field appears here).
import { graphql } from 'relay-runtime';

export const leadsForward = graphql`
  query ConnectionsLeadsQuery($first: Int, $after: String) {
    leads(first: $first, after: $after) @connection(key: "ConnectionsLeadsQuery_leads") {
      edges {
        node {
          id
          email
        }
      }
    }
  }
`;

export const leadsBackward = graphql`
  query ConnectionsLeadsBackwardQuery($last: Int, $before: String) {
    leads(last: $last, before: $before) @connection(key: "ConnectionsLeadsBackwardQuery_leads") {
      edges {
        node {
          id
        }
      }
    }
  }
`;

export const imports = graphql`
  query ConnectionsImportsQuery($first: Int, $after: String) {
    imports(first: $first, after: $after) @connection(key: "ConnectionsImportsQuery_imports") {
      edges {
        node {
          id
          status
        }
      }
    }
  }
`;

export const importErrors = graphql`
  query ConnectionsImportErrorsQuery($id: ID!, $last: Int, $before: String) {
    node(id: $id) {
      ... on Import {
        errors(last: $last, before: $before) @connection(key: "ConnectionsImportErrorsQuery_errors") {
          edges {
            node {
              row
              column
              reason
            }
          }
        }
      }
    }
  }
`;

export const deadJobs = graphql`
  query ConnectionsDeadJobsQuery($first: Int, $after: String, $kind: String) {
    jobQueue {
      dead(first: $first, after: $after, kind: $kind) @connection(key: "ConnectionsDeadJobsQuery_dead") {
        edges {
          node {
            id
            kind
            attempts
          }
        }
      }
    }
  }
`;

export const webhookDeliveries = graphql`
  query ConnectionsWebhookDeliveriesQuery($first: Int, $after: String) {
    webhookEndpoints {
      id
      deliveries(first: $first, after: $after) @connection(key: "ConnectionsWebhookDeliveriesQuery_deliveries") {
        edges {
          node {
            attempt
            succeeded
            responseBody
          }
        }
      }
    }
  }
`;

export const apiKeys = graphql`
  query ConnectionsApiKeysQuery($first: Int, $after: String) {
    apiKeys(first: $first, after: $after) @connection(key: "ConnectionsApiKeysQuery_apiKeys") {
      edges {
        node {
          id
          name
          prefix
          scopes
        }
      }
    }
  }
`;

export const crmConnections = graphql`
  query ConnectionsCrmConnectionsQuery($first: Int, $after: String) {
    crmConnections(first: $first, after: $after) @connection(key: "ConnectionsCrmConnectionsQuery_crmConnections") {
      edges {
        node {
          id
          kind
          name
          pushOnChange
        }
      }
    }
  }
`;

export const campaigns = graphql`
  query ConnectionsCampaignsQuery($first: Int, $after: String) {
    campaigns(first: $first, after: $after) @connection(key: "ConnectionsCampaignsQuery_campaigns") {
      edges {
        node {
          id
          name
          state
          stats {
            enrolled
            sent
          }
        }
      }
    }
  }
`;

export const crmSyncRuns = graphql`
  query ConnectionsCrmSyncRunsQuery($first: Int, $after: String) {
    crmSyncRuns(first: $first, after: $after) @connection(key: "ConnectionsCrmSyncRunsQuery_crmSyncRuns") {
      edges {
        node {
          id
          trigger
          pushed
          pulled
        }
      }
    }
  }
`;

export const retentionRuns = graphql`
  query ConnectionsRetentionRunsQuery($first: Int, $after: String) {
    retentionRuns(first: $first, after: $after) @connection(key: "ConnectionsRetentionRunsQuery_retentionRuns") {
      edges {
        node {
          id
          dryRun
        }
      }
    }
  }
`;

export const erasures = graphql`
  query ConnectionsErasuresQuery($last: Int, $before: String) {
    erasures(last: $last, before: $before) @connection(key: "ConnectionsErasuresQuery_erasures") {
      edges {
        node {
          id
          reason
        }
      }
    }
  }
`;
